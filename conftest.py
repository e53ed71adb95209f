"""pytest setup shared by every topic: the impl switch, the seed, markers, devices and shared fixtures.

    pytest exercises/inf10                      # your code (exercises/)
    pytest exercises/inf10 --impl solutions     # the reference (or LAB_IMPL=solutions)
    pytest exercises/inf10 --seed 1234          # replay a run (the seed is printed in the header)

Every speed figure a test recorded (`lab.timing.compare`, `lab.figures.record_figure`) is printed after the
run in a "speed" section, passed or failed: what was timed, the ratio, its threshold and the tier.
"""
from __future__ import annotations

import os
import random
import zlib

import pytest

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped elsewhere and shown as 'not graded on this hardware'",
    "multi_gpu": "needs two or more CUDA GPUs",
    "speed": "a speed threshold: a ratio measured in the same run",
    "slow": "takes more than a few seconds on a CPU",
    "bans": "legacy: bans(*targets, reason=''); a topic declares its bans once, in exercises/infNN/topic.toml "
            "(grading/topics.py, grading/guard/)",
}


def pytest_addoption(parser):
    group = parser.getgroup("lab")
    group.addoption("--impl", default=None,
                    help="implementation under test: exercises (default), solutions, or a folder laid out "
                         "like them; also settable with LAB_IMPL")
    group.addoption("--seed", type=int, default=None,
                    help="base seed for random inputs (default: fresh each run, printed); also LAB_SEED")


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    impl = config.getoption("--impl") or os.environ.get("LAB_IMPL", "exercises")
    os.environ["LAB_IMPL"] = impl
    from lab.impl import block_solutions, impl_root, solutions_allowed
    try:
        root = impl_root()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    if not solutions_allowed(root):         # a student's code (exercises/ or a submission) never sees them
        block_solutions()
    if not config.pluginmanager.has_plugin("lab-guard"):
        from grading.guard.plugin import GuardPlugin      # bans on library shortcuts; the timing seal
        config.pluginmanager.register(GuardPlugin(), "lab-guard")
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("LAB_SEED") or random.SystemRandom().randrange(2**31))
    config._lab_seed = seed
    os.environ["LAB_SEED"] = str(seed)
    if not config.pluginmanager.has_plugin("lab-speed-summary"):
        config.pluginmanager.register(SpeedSummary(), "lab-speed-summary")


def pytest_report_header(config):
    return [f"lab impl: {os.environ['LAB_IMPL']}",
            f"lab seed: {config._lab_seed}  (replay with --seed {config._lab_seed})"]


def _has_cuda(min_devices: int = 1) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.device_count() >= min_devices


def pytest_collection_modifyitems(config, items):
    """On a machine with a GPU, a speed test that measures on the `device` fixture (inf01's bandwidth, inf02's
    curves) measures the GPU: mark it `gpu` there, so `-m "speed and gpu"` (grading gpu_check) selects it.
    Elsewhere it stays a CPU speed test."""
    if not _has_cuda():
        return
    for item in items:
        if item.get_closest_marker("speed") and "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gpu)


def pytest_runtest_setup(item):
    from lab.outcomes import not_graded         # a skip the grader shows as "not graded on this hardware"
    if item.get_closest_marker("multi_gpu") and not _has_cuda(2):
        not_graded("needs two CUDA GPUs")
    if item.get_closest_marker("gpu") and not _has_cuda():
        not_graded("needs a CUDA GPU")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Say 'not started' plainly when a test reaches a stub, instead of a long traceback."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and report.failed:
        from lab.errors import not_started_in
        stub = not_started_in(call.excinfo.value)       # by type (lab.errors.NotStarted), through the chain
        if stub is not None:
            report.longrepr = NotStartedReport(f"not started: {stub or 'a stub raised NotImplementedError'}")


class NotStartedReport:
    """A one-line failure report for a test that reached a stub (shown in the summary line too)."""

    def __init__(self, message: str):
        self.message = message
        self.reprcrash = self                     # pytest's summary reads longrepr.reprcrash.message

    def toterminal(self, tw) -> None:
        tw.line(self.message)

    def __str__(self) -> str:
        return self.message


class SpeedSummary:
    """Collects the `speed` properties each test recorded and prints them after the run: a passing speed
    test shows its ratio, threshold and tier too, not only a failing one."""

    def __init__(self):
        self.rows: list[tuple[str, dict]] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "teardown":       # user_properties accumulate over the phases: read them once
            self.rows += [(report.nodeid, value) for key, value in report.user_properties
                          if key == "speed" and isinstance(value, dict)]

    @pytest.hookimpl(trylast=True)          # after pytest-benchmark's table, which it explains
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.rows:
            return
        from lab.thresholds import row_tier, speed_line
        terminalreporter.section("speed")
        for nodeid, row in self.rows:
            tier = row_tier(row)
            terminalreporter.write_line(nodeid)
            terminalreporter.write_line(f"    {speed_line(row)}")
            if tier is not None:
                terminalreporter.write_line(f"    {tier[1]}")
        if any("candidate_s" in row for _, row in self.rows):
            terminalreporter.write_line("speed-up = the baseline's median time / yours, measured in the same run; "
                                        "a pytest-benchmark row times a whole paired round (yours + the baseline)")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def seed(request) -> int:
    """A per-test seed: the run's base seed mixed with the test's id (fresh each run, replayable)."""
    return (request.config._lab_seed + zlib.crc32(request.node.nodeid.encode())) % 2**31


@pytest.fixture
def rng(seed):
    """A torch.Generator seeded with the per-test seed; also seeds torch's and Python's global RNGs."""
    import torch
    torch.manual_seed(seed)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def device():
    """'cuda' when a GPU is present, else 'cpu'."""
    return "cuda" if _has_cuda() else "cpu"


@pytest.fixture(scope="session")
def real_model():
    """SmolLM2-135M-Instruct in float32 on the CPU (the lab's real model; shared, do not modify it)."""
    from lab.weights import load_real_model
    model = load_real_model()
    model.eval()
    return model


@pytest.fixture(scope="session")
def tokenizer():
    """The real model's tokenizer, built from its GGUF file."""
    from lab.tokenizer import load_tokenizer
    return load_tokenizer()
