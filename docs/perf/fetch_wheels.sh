#!/usr/bin/env bash
# The Python packages the lab needs that the lent GPU machine lacks (gguf, bitsandbytes, nbformat and its
# needs), as Python 3.12 wheels in .whl/ (ignored by git), to carry to it: run here, from the repository root.
#   bash docs/perf/fetch_wheels.sh        # then run(..., carry=[".whl"]) with docs/perf/gpu_call.sh
# About 43 MB (bitsandbytes is 43 of them); a call carries at most 64 MiB with the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    gguf bitsandbytes nbformat fastjsonschema jsonschema jsonschema-specifications referencing rpds-py \
    jupyter-core traitlets platformdirs
ls .whl
du -sh .whl
