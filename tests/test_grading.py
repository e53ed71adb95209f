"""The grader, run on a fake lab (tests/grading_fixtures/repo, see its README): points, statuses, limits,
and every output format. Each grading run starts real pytest processes, so runs are shared per module
and the limits are short (a 2 s per-test limit, an 8 s per-topic limit where a hang must be cut: long
enough for pytest to start on a loaded 2-core CI machine).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from grading import export, processes, report, rubric, runner
from grading.__main__ import main
from grading.plugin import describe_exception

FIXTURE = Path(__file__).resolve().parent / "grading_fixtures" / "repo"
GRADING = Path(__file__).resolve().parent.parent / "grading"
BROKEN = "def square(x):\n    return x *\n"           # a SyntaxError on line 2


def make_lab(parent: Path) -> Path:
    """A fresh copy of the fake lab, with the two SyntaxErrors written in (kept out of the repo)."""
    root = parent / "lab"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    for topic in ("inf95", "inf96"):
        (root / "exercises" / topic / "toy.py").write_text(BROKEN)
    return root


def grade(root: Path, *args: str, points: Path | None = None) -> dict:
    """Run `python -m grading` in-process on `root`; returns its JSON scorecard."""
    out = root / "out"
    code = main(["--root", str(root), "--points", str(points or root / "points.toml"), "--out", str(out),
                 "--json", str(out / "card.json"), *args])
    assert code == 0
    return json.loads((out / "card.json").read_text())


def topic_of(doc: dict, name: str) -> dict:
    return next(t for t in doc["topics"] if t["topic"] == name)


def find_test(doc: dict, topic: str, name: str) -> dict:
    return next(t for t in topic_of(doc, topic)["tests"] if t["name"] == name)


def pts(test_or_topic: dict, key: str = "points") -> tuple[float, float, float]:
    t = test_or_topic[key]
    return t["earned"], t["possible_here"], t["possible"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[Path, dict]:
    """The whole fake lab graded once, with every output written."""
    root = make_lab(tmp_path_factory.mktemp("graded"))
    out = root / "out"
    doc = grade(root, "--test-timeout", "2", "--topic-timeout", "30", "--seed", "1234",
                "--markdown", str(out / "card.md"), "--gradescope", str(out / "results.json"),
                "--junit", str(out / "junit.xml"))
    return root, doc


@pytest.mark.parametrize("name, state, points, category", [
    ("test_add_matches_python", "passed", (2, 2, 2), "correctness"),
    ("test_mul_matches_python", "not started", (0, 3, 3), "correctness"),
    ("test_sub_matches_python", "partial", (2, 3, 3), "correctness"),        # 2 of 3 cases
    ("test_wait_ready_returns", "timed out", (0, 1, 1), "correctness"),      # the per-test limit
    ("test_add_on_gpu", "not graded on this hardware", (0, 0, 2), "correctness"),
    ("test_add_speed", "passed", (2, 2, 2), "speed"),                        # requires only test_add
    ("test_sub_speed", "gated", (0, 2, 2), "speed"),                         # default: all of its file
])
def test_points_and_state_of_each_test(graded, name, state, points, category):
    test = find_test(graded[1], "inf98", name)
    assert (test["state"], pts(test), test["category"]) == (state, points, category)


def test_messages_say_why(graded):
    doc = graded[1]
    assert find_test(doc, "inf98", "test_sub_matches_python")["message"] == \
        "[2-7] AssertionError: sub(2, 7): expected -5, got 5"
    assert find_test(doc, "inf98", "test_wait_ready_returns")["message"].startswith("Timeout (>2")
    assert find_test(doc, "inf98", "test_sub_speed")["message"] == \
        "speed points withheld until test_mul_matches_python, test_sub_matches_python, " \
        "test_wait_ready_returns pass"
    case = find_test(doc, "inf98", "test_add_speed")["cases"][0]
    assert (case["speed"]["ratio"], case["speed"]["threshold"], case["speed"]["reference_ratio"]) == (3.5, 2.0, 4.5)
    shift = find_test(doc, "inf97", "test_shift_moves")     # a RuntimeError raised from the stub's error
    assert (shift["state"], shift["message"]) == ("not started", "RuntimeError: shift could not run")


@pytest.mark.parametrize("topic, status, message, correctness, speed", [
    ("inf95", "error", "SyntaxError in exercises/inf95/toy.py line 2: invalid syntax", (0, 2, 2), (0, 0, 0)),
    ("inf96", "error", "SyntaxError in exercises/inf96/toy.py line 2: invalid syntax", (0, 3, 3), (0, 1, 1)),
    ("inf97", "not started", "test_scale_doubles: NotImplementedError: inf97: implement scale",
     (0, 4, 4), (0, 1, 1)),
    ("inf98", "partial", "test_mul_matches_python: NotImplementedError: inf98: implement mul",
     (4, 9, 11), (2, 4, 4)),
    ("inf99", "crashed", "crashed in test_crash_prone: Fatal Python error: Segmentation fault",
     (1, 4, 4), (0, 0, 0)),
])
def test_status_and_points_of_each_topic(graded, topic, status, message, correctness, speed):
    t = topic_of(graded[1], topic)
    assert t["status"] == status
    assert t["message"].startswith(message)
    assert (pts(t, "correctness"), pts(t, "speed")) == (correctness, speed)


def test_totals_add_up_and_respect_hardware(graded):
    doc = graded[1]
    assert pts(doc["totals"]) == (7, 28, 30)
    for t in doc["topics"]:
        for test in t["tests"]:
            earned, here, full = pts(test)
            assert 0 <= earned <= here <= full


def test_collection_error_keeps_the_tables_tests_and_their_categories(graded):
    inf96 = topic_of(graded[1], "inf96")
    assert inf96["errors"] == ["SyntaxError in exercises/inf96/toy.py line 2: invalid syntax"]
    assert {t["name"]: (t["state"], t["category"]) for t in inf96["tests"]} == {
        "test_square": ("not run", "correctness"), "test_cube": ("not run", "correctness"),
        "test_square_speed": ("not run", "speed")}   # the speed marker, read from the solutions


def test_a_crash_mid_topic_keeps_earlier_results(graded):
    doc = graded[1]
    states = {t["name"]: t["state"] for t in topic_of(doc, "inf99")["tests"]}
    assert states == {"test_first_passes": "passed", "test_crash_prone": "crashed", "test_after_crash": "not run"}
    assert "SIGSEGV" in find_test(doc, "inf99", "test_crash_prone")["message"]


def test_terminal_scorecard_fits_has_no_colors_and_shows_the_seed(graded):
    doc = graded[1]
    assert doc["seed"] == 1234 and set(doc["seeds"].values()) == {1234}     # every topic got --seed
    text = report.terminal(doc, width=80)
    assert "lab seed: 1234 (replay with --seed 1234)" in text
    assert "\033[" not in text
    table = text.split("\n\n")[1].splitlines()
    assert table[0].split() == ["topic", "correctness", "speed", "status", "first", "failure"]
    assert all(len(line) <= 80 for line in table)
    assert "n/a" in table[4] and "partial" in table[4]          # inf98: a GPU test it cannot grade here
    assert "total: 7 / 28 points on this hardware (30 in full)" in text
    # a topic not started at all is one line in the details, not one per test; a partial one lists its tests
    details = text.split("then why):\n")[1]
    assert "  inf97  not started: 3 tests wait for your code; begin with exercises/inf97/README.md" in details
    assert "inf97  test_scale_doubles" not in details and "inf98  test_mul_matches_python" in details


def test_speed_tests_show_their_figure_and_tier_without_points(graded):
    """Tiers (lab/thresholds.py) are shown, never scored: inf98's add reaches 3.5x, 78% of the reference's
    4.5x on its card (silver, >= 70%); sub's points are gated, so its tier is withheld; inf97's figure is not
    a paired speed-up (no tiers); the points above are the same as without tiers."""
    doc = graded[1]
    add, sub = find_test(doc, "inf98", "test_add_speed"), find_test(doc, "inf98", "test_sub_speed")
    assert add["tier"] == "silver" and pts(add) == (2, 2, 2)
    assert add["speed_line"].startswith("add vs a slow add: speed-up 3.50x, threshold 2x, passed")
    assert add["tier_line"].startswith("tier silver: 78% of the reference's 4.50x on Fake GPU")
    assert sub["tier"] == "withheld" and sub["tier_line"].startswith("tier withheld, as its speed points are")
    scale = find_test(doc, "inf97", "test_scale_speed")
    assert scale["tier"] is None and scale["tier_line"] is None
    assert all(t["tier"] is None for topic in doc["topics"] for t in topic["tests"] if t["category"] == "correctness")
    text = report.terminal(doc, width=200)
    section = text.split(report.SPEED_HEADING)[1]
    assert "  inf98  test_add_speed  tier silver\n      add vs a slow add: speed-up 3.50x" in section
    assert "78% of the reference's 4.50x on Fake GPU" in section


def test_json_scorecard_matches_its_schema(graded):
    schema = json.loads((GRADING / "scorecard_schema.json").read_text())
    jsonschema.validate(graded[1], schema)


def test_gradescope_results_match_gradescopes_format(graded):
    root, doc = graded
    results = json.loads((root / "out" / "results.json").read_text())
    schema = json.loads((GRADING / "gradescope_schema.json").read_text())
    jsonschema.validate(results, schema)
    assert results["score"] == 7
    assert sum(t["score"] for t in results["tests"]) == 7
    names = {t["name"] for t in results["tests"]}
    assert "inf98 test_add_on_gpu" not in names                  # not a zero, not a pass: left out
    assert results["extra_data"]["not_graded_here"] == ["inf98 test_add_on_gpu"]
    board = {entry["name"]: entry for entry in results["leaderboard"]}
    assert board["inf98 test_add_speed speed-up"] == {"name": "inf98 test_add_speed speed-up", "value": 3.5,
                                                       "order": "desc"}
    output = next(t["output"] for t in results["tests"] if t["name"] == "inf98 test_add_speed")
    assert "speed-up 3.50x, threshold 2x, passed" in output and "tier silver" in output
    with pytest.raises(jsonschema.ValidationError):               # the schema has teeth
        jsonschema.validate({**results, "tests": [{"score": 1, "status": "ok"}]}, schema)


def test_markdown_and_junit_say_the_same(graded):
    root, doc = graded
    markdown = (root / "out" / "card.md").read_text()
    assert "| inf99 | 1/4 | - | crashed |" in markdown
    assert "| test_add_speed | speed | 2/2 (of 2) | passed | silver | add vs a slow add: speed-up 3.50x" in markdown
    assert "**total: 7 / 28 points on this hardware (30 in full)" in markdown
    suites = {s.get("name"): s for s in ET.parse(root / "out" / "junit.xml").getroot()}
    assert suites["inf96"].find("testcase[@name='collection']/error") is not None
    assert suites["inf99"].get("errors") == "1" and suites["inf99"].get("skipped") == "1"
    assert suites["inf98"].get("tests") == "9"                     # 7 tests, one of them with 3 cases
    assert "tier silver" in suites["inf98"].find("testcase[@name='test_add_speed']/system-out").text


def test_a_hang_costs_only_its_topic(tmp_path):
    root = make_lab(tmp_path)
    doc = grade(root, "--topics", "inf98,inf99", "--test-timeout", "60", "--topic-timeout", "8")
    inf98 = topic_of(doc, "inf98")
    assert inf98["status"] == "timed out"
    assert inf98["message"] == "timed out in test_wait_ready_returns: exceeded the 8 s topic time limit"
    assert inf98["duration_s"] < 30
    has_cuda = doc["hardware"]["cuda"]      # a gpu test that never ran is gradable on a GPU, not on a CPU
    states = {t["name"]: t["state"] for t in inf98["tests"]}
    assert states == {"test_add_matches_python": "passed", "test_mul_matches_python": "not started",
                      "test_sub_matches_python": "partial", "test_wait_ready_returns": "timed out",
                      "test_add_on_gpu": "not run" if has_cuda else "not graded on this hardware",
                      "test_add_speed": "not run", "test_sub_speed": "not run"}
    assert pts(inf98) == (4, 15 if has_cuda else 13, 15)
    assert topic_of(doc, "inf99")["status"] == "crashed"       # the next topic was still graded
    assert running_in(root) == []                               # and nothing of inf98 was left running


def test_sigterm_stops_the_grader_and_kills_its_topic(tmp_path):
    """`kill` or `timeout` (SIGTERM) on `python -m grading` ends it as Ctrl-C does: one line, exit status 143,
    the running topic's process group killed. Before, the topic (a session of its own) outlived the grader
    until its next write to the closed pipe: here inf98's silent hour-long wait; on a GPU, a speed test
    measuring against the next command's processes."""
    import time
    root = make_lab(tmp_path)
    out = root / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grading", "--root", str(root), "--points",
                             str(root / "points.toml"), "--out", str(out), "--topics", "inf98",
                             "--test-timeout", "600", "--topic-timeout", "600", "--no-history"],
                            cwd=GRADING.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [c for c in running_in(root) if "pytest" in c] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [c for c in running_in(root) if "pytest" in c], "inf98's pytest process never started"
    time.sleep(4)                               # past its quick tests, into test_wait_ready_returns' wait
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "python -m grading: terminated (SIGTERM); no scorecard written" in err, err
    deadline = time.monotonic() + 10
    while running_in(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_in(root) == [], "the topic's processes outlived the grader"


def test_run_cli_ends_a_tool_on_sigterm_or_ctrl_c_with_a_line(capsys):
    """The instructors' tools (`python -m grading gpu_check`, calibrate) end on SIGTERM or Ctrl-C with one line and
    exit status 143 or 130, not a traceback, and leave SIGTERM's handler as they found it."""
    import signal
    import time

    def killed():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                               # the handler raises before this ends
        return 0

    def interrupted():
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    assert processes.run_cli(killed, "python -m grading gpu_check") == 143
    assert processes.run_cli(interrupted, "python -m grading gpu_check") == 130
    assert processes.run_cli(lambda: 0, "tool") == 0 and signal.getsignal(signal.SIGTERM) is before
    err = capsys.readouterr().err.splitlines()
    assert err == ["python -m grading gpu_check: terminated (SIGTERM); the running topics' processes were stopped",
                   "python -m grading gpu_check: interrupted; the running topics' processes were stopped"]


@pytest.mark.skipif(not __import__("grading.forkserver").forkserver.available(), reason="needs POSIX forkserver")
def test_a_forked_topic_process_records_what_a_fresh_one_does(tmp_path):
    """grading.forkserver (gpu_check's default): a topic forked from the warm server gives the tests the same
    outcomes and records as a fresh interpreter, sees its own environment and working directory, and is cut
    at the topic limit with its whole process group killed; a submission's sandboxed topic is never forked."""
    root = make_lab(tmp_path)
    limits = runner.Limits(test_s=60, topic_s=8)
    runs = {fork: runner.run_topic(root, "inf98", "exercises", limits, tmp_path / f"out-{fork}", seed=7, fork=fork)
            for fork in (False, True)}
    for run in runs.values():
        assert run.timed_out and not run.tampering, run.log_text[-2000:]
    outcomes = {fork: {k: (v["outcome"], v.get("message")) for k, v in run.tests.items()} for fork, run in runs.items()}
    assert outcomes[True] == outcomes[False] and len(outcomes[True]) >= 3
    assert runs[True].seed == runs[False].seed == 7
    assert running_in(root) == []                       # the hang was killed with its group
    (root / "exercises" / "inf97" / "test_probe.py").write_text(
        "import os, sys\n\n\ndef test_sees_its_own_process_environment_and_folder():\n"
        "    assert os.environ.get('LAB_SPEED_REPEAT') == '3' and os.environ.get('LAB_IMPL') == 'solutions'\n"
        f"    assert os.path.samefile(os.getcwd(), {str(root)!r})\n"
        f"    assert any(p and os.path.samefile(p, {str(root)!r}) for p in sys.path if os.path.isdir(p or '.'))\n"
        "    assert os.getpgrp() == os.getpid() == os.getsid(0)    # a session and process group of its own\n"
        "    assert 'PYTORCH_NVML_BASED_CUDA_CHECK' not in os.environ    # the server's own (grading.fork_safe)\n")
    done = runner.run_topic(root, "inf97", "solutions", limits, tmp_path / "out-env", fork=True,
                            env={"LAB_SPEED_REPEAT": "3"})
    fresh = runner.run_topic(root, "inf97", "solutions", limits, tmp_path / "out-env2", env={"LAB_SPEED_REPEAT": "3"})
    probe = "exercises/inf97/test_probe.py::test_sees_its_own_process_environment_and_folder"
    assert done.tests[probe]["outcome"] == fresh.tests[probe]["outcome"] == "passed", done.log_text[-2000:]
    assert done.exit_code == fresh.exit_code and not done.crashed and not done.timed_out
    assert {k: v["outcome"] for k, v in done.tests.items()} == {k: v["outcome"] for k, v in fresh.tests.items()}
    (root / "exercises" / "inf97" / "test_preloaded.py").write_text(     # what the server imported, a fork has
        "import sys\n\n\ndef test_preloaded():\n    from grading.forkserver import PRELOAD\n"
        "    assert [m for m in PRELOAD if m not in sys.modules] == []\n")
    preloaded = runner.run_topic(root, "inf97", "solutions", limits, tmp_path / "out-preload", fork=True,
                                 pytest_args=["-k", "test_preloaded"])
    assert preloaded.tests["exercises/inf97/test_preloaded.py::test_preloaded"]["outcome"] == "passed", \
        preloaded.log_text[-2000:]
    for topic in ("inf96", "inf99"):            # a collection error (exit 1) and a segfault (-11, crashed)
        forked, fresh = (runner.run_topic(root, topic, "exercises", limits, tmp_path / f"out-{topic}-{fork}",
                                          fork=fork) for fork in (True, False))
        assert (forked.exit_code, forked.crashed) == (fresh.exit_code, fresh.crashed), topic
    with pytest.raises(ValueError, match="never forked"):
        runner.run_topic(root, "inf97", "solutions", limits, tmp_path / "out-sandbox", fork=True, sandbox_env={})


@pytest.mark.parametrize("fork", [False, True] if __import__("grading.forkserver").forkserver.available() else [False])
def test_a_topic_run_says_where_its_process_spent_the_seconds_outside_its_tests(tmp_path, fork):
    """gpu_check's seconds line (issue 10's 20 minutes) reads each test's pytest phases (the plugin's phases_s)
    and the process's start-and-collection and exit (grading.runner.process_phases, by when the records came):
    a test module that sleeps at import, a fixture that sleeps in setup and teardown and an exit finalizer that
    sleeps each show in their own phase, fresh or forked."""
    root = make_lab(tmp_path)
    stamps = tmp_path / "stamps.txt"            # the child's own clock (CLOCK_MONOTONIC: the machine's, shared)
    (root / "exercises" / "inf97" / "test_slow_phases.py").write_text(
        "import multiprocessing.util, time\n\nimport pytest\n\n\n"
        f"def stamp(what):\n    with open({str(stamps)!r}, 'a') as f:\n"
        "        f.write(f'{what} {time.monotonic()}\\n')\n\n\n"
        "time.sleep(0.8)       # collection\nstamp('imported')\n"
        "# the exit: a finalizer both a fresh interpreter and a forked child run (the fork skips atexit's hooks)\n"
        "multiprocessing.util.Finalize(None, time.sleep, args=(1.0,), exitpriority=0)\n\n\n"
        "@pytest.fixture\ndef slow():\n"
        "    time.sleep(0.4)\n    yield\n    time.sleep(0.6)\n    stamp('tested')\n\n\n"
        "def test_phases(slow):\n    time.sleep(0.2)\n")
    began = time.monotonic()
    run = runner.run_topic(root, "inf97", "solutions", runner.Limits(test_s=60, topic_s=60), tmp_path / "out",
                           pytest_args=["-k", "test_phases"], fork=fork)
    ended = time.monotonic()
    record = run.tests["exercises/inf97/test_slow_phases.py::test_phases"]
    assert record["outcome"] == "passed", run.log_text[-2000:]
    phases = record["phases_s"]
    assert set(phases) == {"setup", "call", "teardown"}
    # lower bounds only (a loaded machine only lengthens a phase); the sums catch a phase counted twice
    assert phases["setup"] >= 0.4 and phases["call"] >= 0.2 and phases["teardown"] >= 0.6, phases
    assert abs(sum(phases.values()) - record["duration_s"]) < 1e-3
    assert set(run.phases) == {"start_s", "exit_s"}, run.phases
    at = dict(line.split() for line in stamps.read_text().splitlines())
    imported, after_tests = float(at["imported"]) - began, ended - float(at["tested"])
    # the collection record comes after the module's import, the session record after the last teardown and
    # before the finalizer's second: each phase is bounded by the child's own stamps, so a start taken for an
    # exit (or the reverse) shows
    assert imported <= run.phases["start_s"] <= imported + 1.0, (run.phases, imported)
    assert 1.0 <= run.phases["exit_s"] <= after_tests, (run.phases, after_tests)
    assert run.phases["start_s"] + record["duration_s"] + run.phases["exit_s"] <= run.duration_s + 0.05
    assert runner.process_phases([{"kind": "collection"}], [], 0.0, 1.0) == {}         # no pipe: no times


def running_in(root: Path) -> list[str]:
    """Command lines of live processes that mention `root` (Linux /proc; empty elsewhere)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:                    # the process may end while we look
            found += [path.read_bytes().decode(errors="replace").replace("\0", " ")]
        except OSError:
            pass
    return [cmdline for cmdline in found if str(root) in cmdline]


def test_the_reference_scores_complete(tmp_path):
    root = make_lab(tmp_path)                   # two topics at a time: the runs come back in topic order
    doc = grade(root, "--impl", "solutions", "--topics", "inf96,inf98,inf99", "--test-timeout", "5", "--jobs", "2")
    assert [t["topic"] for t in doc["topics"]] == ["inf96", "inf98", "inf99"]
    assert [t["status"] for t in doc["topics"]] == ["complete"] * 3
    assert pts(topic_of(doc, "inf98")) == (13, 13, 15)          # all but the GPU test's 2 points


def test_points_table_drift_is_shown_not_fatal(tmp_path, monkeypatch):
    root = make_lab(tmp_path)
    points = root / "drifted.toml"
    points.write_text((root / "points.toml").read_text().replace("test_scale_speed = 1", "test_gone = 1"))
    monkeypatch.setenv("FAKE_CRASH", "exit")                    # inf99 crashes with os._exit(3) this time
    doc = grade(root, "--topics", "inf97,inf99", "--test-timeout", "5", points=points)
    unscored, gone = find_test(doc, "inf97", "test_scale_speed"), find_test(doc, "inf97", "test_gone")
    assert (pts(unscored), unscored["state"]) == ((0, 0, 0), "not started")
    assert (pts(gone), gone["state"]) == ((0, 1, 1), "missing")
    assert doc["warnings"] == ["inf97: test_scale_speed ran but is not in the points table (0 points)",
                               "inf97: test_gone is in the points table but was not collected"]
    assert topic_of(doc, "inf99")["message"] == "crashed in test_crash_prone: the process ended (exit code 3)"
    problems = rubric.check_against_collection(root, "solutions", ["inf97"], points)
    assert [p.split(" (")[0] for p in problems] == ["inf97: test_scale_speed is collected but not in the points table",
                                                    "inf97: test_gone is in the points table but not collected"]
    graded_run = runner.load_run("inf97", root / "out" / "records" / "inf97.jsonl")     # the grading's collection
    assert rubric.check_against_collection(root, "solutions", ["inf97"], points, runs=[graded_run]) == problems


@pytest.mark.parametrize("text, problem", [
    ("[week1]\ntest_a = 1\n", "[week1] is not a topic section"),
    ("[inf00]\ntest_a = -1\n", "[inf00] test_a: points must be a number >= 0"),
    ("[inf00]\ntest_a = { points = 1, weight = 2 }\n", "[inf00] test_a: use { points = N, requires = [...] }"),
    ("[inf00]\ntest_a = { points = 1, requires = ['test_b'] }\n", "requires ['test_b'], not in [inf00]"),
    ("[inf00\n", "is not valid TOML"),
])
def test_a_malformed_points_table_says_where(tmp_path, text, problem):
    path = tmp_path / "points.toml"
    path.write_text(text)
    with pytest.raises(rubric.PointsError, match=re.escape(problem)):
        rubric.load_points(path)


def test_the_lab_points_table_loads():
    rubric.load_points()


def test_exception_descriptions():
    root = Path.cwd()
    try:
        try:
            raise NotImplementedError("inf10: implement paged_attention")
        except NotImplementedError as exc:
            raise ValueError("wrapper\nmore detail") from exc
    except ValueError as exc:
        described = describe_exception(exc, root)
    assert described == {"message": "ValueError: wrapper", "not_implemented": True, "import_error": False,
                         "timed_out": False}
    try:
        compile("x = (", str(root / "exercises" / "inf10" / "kv_cache.py"), "exec")
    except SyntaxError as exc:
        described = describe_exception(exc, root)
    assert described["message"].startswith("SyntaxError in exercises/inf10/kv_cache.py line 1: ")
    assert described["import_error"] and not described["not_implemented"]


def test_bad_topics_exit_2_with_the_known_topics():
    done = subprocess.run([sys.executable, "-m", "grading", "--root", str(FIXTURE), "--topics", "inf42,inf98"],
                          capture_output=True, text=True, timeout=60, cwd=GRADING.parent,
                          env={**os.environ, "PYTHONPATH": str(GRADING.parent)})
    assert done.returncode == 2
    assert "unknown topic(s) inf42; known topics: inf95, inf96, inf97, inf98, inf99" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("args, message", [
    (["--impl", "/no/such/folder"], "is not 'exercises', 'solutions' or an existing folder"),
    (["--test-timeout", "-1"], "give a positive number of seconds"),
    (["--topic-timeout", "soon"], "is not a number of seconds"),
    (["--points", "/no/such/points.toml"], "cannot read the points table"),
    (["--topics", ","], "unknown topic(s) (none given)"),
    (["--root", str(GRADING)], "no topics under"),
    (["--json", str(GRADING)], "is a folder; give a file path"),
    (["--jobs", "0"], "give 1 or more topics at once"),
    (["--jobs", "2", "--submission", str(FIXTURE)], "a submission's topics are graded one at a time"),
])
def test_bad_arguments_exit_2_without_a_traceback(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(FIXTURE), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_outputs_render_from_a_minimal_document():
    doc = {"schema": "lab-scorecard/1", "impl": "exercises", "root": "/x", "started_at": "t", "duration_s": 0,
           "limits": {"test_timeout_s": 1, "topic_timeout_s": 1},
           "hardware": {"cuda": False, "machine": "x86_64", "torch": None, "python": "3.12"},
           "seed": None, "seeds": {}, "warnings": [], "topics": [],
           "totals": {k: {"earned": 0, "possible_here": 0, "possible": 0} for k in ("points", "correctness", "speed")}}
    assert "total: 0 / 0 points" in report.terminal(doc)
    assert export.gradescope(doc)["tests"] == []
    assert ET.fromstring(export.junit(doc).split("?>", 1)[1]).tag == "testsuites"
