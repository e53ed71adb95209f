"""Planted wrong solutions must lose points: each fails the tests it names, through the impl switch.

Each planted version is `tests/planted/<topic>/<name>.toml` + `<name>.diff`, a diff against the reference
(see tests/planted/README.md). `grading.planted` applies it in a temporary copy of solutions/<topic>, and
the grader's runner (`grading.runner.run_topic`, the same process, plugin and records the scorecard uses)
runs only the tests the version names in `expect_fail`; each must fail (not "not started", not skipped,
not a module that does not load), so the grader's table takes its points.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from grading.planted import REPO_ROOT, PlantedDiffError, apply_diff, materialize, planted_versions
from grading.rubric import load_points
from grading.runner import Limits, TopicRun, run_topic

PLANTED = planted_versions()
# Each planted run is a pytest process that spends most of its few seconds starting up and loading, on one
# thread: two at a time, each on one thread, keep a 2-core CI machine busy (measured: 348 s one by one).
WORKERS = max(1, min(2, os.cpu_count() or 1))
LIMITS = Limits(test_s=300, topic_s=900)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(planted, tmp) -> TopicRun:
    """The tests a planted version names, in the grader's runner, on one CPU thread, without GPU tests."""
    root = materialize(planted, tmp / "impl")
    args = ["-k", " or ".join(planted.expect_fail), "-m", "not gpu"]
    if len(planted.expect_fail) == 1:
        args.append("--maxfail=1")      # one failed case of its one test is what is checked: skip the rest
    return run_topic(REPO_ROOT, planted.topic, str(root), LIMITS, tmp / "out", pytest_args=args,
                     env=ONE_THREAD, hidden=False)


@pytest.fixture(scope="module")
def planted_runs(request, tmp_path_factory):
    """label -> future of its TopicRun for every selected planted version, all submitted at once,
    WORKERS at a time."""
    selected = {item.callspec.params["planted"].label for item in request.session.items
                if getattr(item, "callspec", None) and "planted" in item.callspec.params}
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = {p.label: pool.submit(_run, p, tmp_path_factory.mktemp(f"{p.topic}-{p.name}"))
                for p in PLANTED if p.label in selected and p.expect_fail}
        yield runs
        for future in runs.values():
            future.cancel()


def test_there_are_planted_versions_and_no_leftover_copies():
    assert len(PLANTED) >= 60, f"only {len(PLANTED)} planted versions found"
    stray = [p for p in (REPO_ROOT / "tests" / "planted").rglob("*.py")]
    assert not stray, f"planted versions are .toml + .diff; these look like old copies: {stray[:5]}"


@pytest.mark.parametrize("planted", PLANTED, ids=lambda p: p.label)
def test_planted_implementation_loses_points(planted, planted_runs):
    expect = planted.expect_fail
    assert planted.description and (expect or planted.naive), \
        f"{planted.label}: its .toml needs a description and expect_fail (or naive = true for a GPU-only baseline)"
    if not expect:
        pytest.skip("a GPU speed baseline only: its speed tests are checked by grading.tools.calibrate on a GPU")
    points = load_points()[planted.topic]
    unknown = [t for t in expect if t not in points]
    assert not unknown, (f"{planted.label}: expect_fail names tests not in [{planted.topic}] of "
                         f"exercises/{planted.topic}/topic.toml: {unknown}")
    run = planted_runs[planted.label].result()
    assert run.items, f"{planted.label}: pytest collected nothing:\n{run.log_text[-2000:]}"
    outcomes: dict[str, list[str]] = {}
    for record in run.tests.values():
        state = "not started" if record["not_implemented"] else \
            "did not load" if record["import_error"] else record["outcome"]
        outcomes.setdefault(record["name"], []).append(state)
    for test in expect:
        states = outcomes.get(test)
        assert states, f"{planted.label}: {test} did not run (output tail: {run.log_text[-800:]})"
        assert {"failed", "error"} & set(states), \
            f"{planted.label} ({planted.description}): {test} should fail, got {states}"


# ------------------------------------------------------------------------------------- the diff applier
SOLUTION = "def f(x):\n    y = x + 1\n    return y\n\n\ndef g(x):\n    return 2 * x\n"
DIFF = """--- a/m.py
+++ b/m.py
@@ -5,3 +5,3 @@

 def g(x):
-    return 2 * x
+    return 3 * x
"""


def test_a_diff_applies_where_its_context_matches(tmp_path):
    (tmp_path / "m.py").write_text(SOLUTION)
    apply_diff(DIFF, tmp_path, "inf99/triple")
    assert (tmp_path / "m.py").read_text() == SOLUTION.replace("2 * x", "3 * x")
    (tmp_path / "m.py").write_text("# a new first line\n" + SOLUTION)       # the solution grew above the hunk
    apply_diff(DIFF, tmp_path, "inf99/triple")
    assert (tmp_path / "m.py").read_text().endswith("return 3 * x\n")


def test_a_diff_that_no_longer_applies_fails_loudly(tmp_path):
    (tmp_path / "m.py").write_text(SOLUTION.replace("2 * x", "x + x"))       # the solution changed there
    with pytest.raises(PlantedDiffError) as error:
        apply_diff(DIFF, tmp_path, "inf99/triple")
    message = str(error.value)
    assert "inf99/triple" in message and "m.py" in message and "hunk 1" in message, message
    assert "return 2 * x" in message and "return x + x" in message, message


def test_a_diff_for_a_file_the_solution_lacks_fails_loudly(tmp_path):
    with pytest.raises(PlantedDiffError, match="inf99/triple: m.py is not a file of the current solution"):
        apply_diff(DIFF, tmp_path, "inf99/triple")


def test_every_planted_diff_applies_and_changes_the_solution(tmp_path):
    for planted in PLANTED:
        root = materialize(planted, tmp_path / planted.label)
        changed = [p.name for p in (root / planted.topic).glob("*.py")
                   if p.read_text() != (REPO_ROOT / "solutions" / planted.topic / p.name).read_text()]
        assert changed, f"{planted.label}: its diff changes nothing"
        imports = [p.name for p in (root / planted.topic).glob("*.py")
                   if re.search(r"^\s*(from|import) solutions\b", p.read_text(), re.M)]
        assert not imports, f"{planted.label}: planted code may not import solutions ({imports})"
    with pytest.raises(PlantedDiffError):
        apply_diff("@@ -1 +1 @@\n-x\n+y\n", tmp_path, "inf99/headless")
