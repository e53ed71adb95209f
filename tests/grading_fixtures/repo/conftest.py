"""Just enough of the lab's conftest for the grader: --impl, a printed seed, GPU tests skipped (no CUDA)."""
import os
import random

import pytest


def pytest_addoption(parser):
    parser.addoption("--impl", default=os.environ.get("LAB_IMPL", "exercises"))


def pytest_configure(config):
    os.environ["LAB_IMPL"] = config.getoption("--impl")
    config._lab_seed = int(os.environ.get("LAB_SEED") or random.randrange(10**6))


def pytest_report_header(config):
    return f"lab seed: {config._lab_seed}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="not graded on this hardware: needs CUDA"))
