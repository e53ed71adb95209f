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
from pathlib import Path

import pytest

from grading.rubric import load_points

ROOT = Path(__file__).resolve().parent.parent
PLANTED = sorted(p.parent for p in (ROOT / "tests" / "planted").glob("inf*/*/planted.toml"))


def _meta(folder: Path) -> dict:
    return tomllib.loads((folder / "planted.toml").read_text())


@pytest.mark.parametrize("folder", PLANTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_planted_implementation_loses_points(folder, tmp_path):
    topic, meta = folder.parent.name, _meta(folder)
    expect = meta.get("expect_fail", [])
    assert meta.get("description") and (expect or meta.get("naive")), \
        f"{folder}: planted.toml needs a description and expect_fail (or naive = true for a GPU-only baseline)"
    if not expect:
        pytest.skip("a GPU speed baseline only: its speed tests are checked by grading.calibrate on a GPU")
    points = load_points()[topic]
    unknown = [t for t in expect if t not in points]
    assert not unknown, f"{folder}: expect_fail names tests not in [{topic}] of grading/points.toml: {unknown}"
    report = tmp_path / "junit.xml"
    selection = " or ".join(expect)
    cmd = [sys.executable, "-m", "pytest", f"exercises/{topic}", "--impl", str(folder), "-k", selection,
           "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "-m", "not gpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LAB_IMPL": str(folder)})
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
