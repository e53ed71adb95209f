"""Planted wrong solutions must lose points: each fails the tests it names, through the impl switch.

Each folder tests/planted/<topic>/<name>/ is a complete implementation root (see tests/planted/README.md).
Only the tests a planted version names in `expect_fail` are run (the rest of its topic is the solution's
code), and each must fail — not as 'not started', not skipped — so the grader's table takes its points.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grading.rubric import load_points
from lab.paths import REPO_ROOT

ROOT = REPO_ROOT
PLANTED = sorted(p.parent for p in (ROOT / "tests" / "planted").glob("inf*/*/planted.toml"))
# Each planted run is a pytest process that spends most of its few seconds starting up and loading, on one
# thread: two at a time, each on one thread, keep a 2-core CI machine busy (measured: 348 s one by one).
WORKERS = max(1, min(2, os.cpu_count() or 1))


def _meta(folder: Path) -> dict:
    return tomllib.loads((folder / "planted.toml").read_text())


def _run(folder: Path, report: Path) -> subprocess.CompletedProcess:
    """The tests a planted version names, in their own pytest process, on one CPU thread."""
    expect = _meta(folder).get("expect_fail", [])
    cmd = [sys.executable, "-m", "pytest", f"exercises/{folder.parent.name}", "--impl", str(folder), "-k",
           " or ".join(expect), "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "-m", "not gpu"]
    env = {**os.environ, "LAB_IMPL": str(folder), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def planted_runs(request, tmp_path_factory):
    """folder -> (future of its pytest process, its JUnit report) for every selected planted version, all
    started at once, WORKERS at a time."""
    selected = {item.callspec.params["folder"] for item in request.session.items
                if getattr(item, "callspec", None) and "folder" in item.callspec.params}
    runnable = [f for f in PLANTED if f in selected and _meta(f).get("expect_fail")]
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = {}
        for folder in runnable:
            report = tmp_path_factory.mktemp(f"{folder.parent.name}-{folder.name}") / "junit.xml"
            runs[folder] = (pool.submit(_run, folder, report), report)
        yield runs
        for future, _ in runs.values():
            future.cancel()


@pytest.mark.parametrize("folder", PLANTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_planted_implementation_loses_points(folder, planted_runs):
    topic, meta = folder.parent.name, _meta(folder)
    expect = meta.get("expect_fail", [])
    assert meta.get("description") and (expect or meta.get("naive")), \
        f"{folder}: planted.toml needs a description and expect_fail (or naive = true for a GPU-only baseline)"
    if not expect:
        pytest.skip("a GPU speed baseline only: its speed tests are checked by grading.tools.calibrate on a GPU")
    points = load_points()[topic]
    unknown = [t for t in expect if t not in points]
    assert not unknown, f"{folder}: expect_fail names tests not in [{topic}] of exercises/{topic}/topic.toml: {unknown}"
    future, report = planted_runs[folder]
    proc = future.result()
    assert report.exists(), f"pytest did not run:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name").split("[")[0]
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:
            state = "not started" if "not started" in (failure.get("message") or "") else "failed"
        else:
            state = "skipped" if case.find("skipped") is not None else "passed"
        outcomes.setdefault(name, []).append(state)
    for test in expect:
        states = outcomes.get(test)
        assert states, f"{folder.name}: {test} did not run (output tail: {proc.stdout[-500:]})"
        assert "failed" in states, f"{topic}/{folder.name} ({meta['description']}): {test} should fail, got {states}"
