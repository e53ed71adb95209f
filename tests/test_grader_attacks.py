"""Attacks on the grader, each as a cheating student would write it (not a topic's planted versions).

A fake lab (tests/grading_fixtures/repo, with tests/grading_fixtures/attacks laid over it: a topic inf94
whose test compares the student's answer with a cached oracle) is graded through `python -m grading
--submission`; each submission's `inf94/toy.py` attacks what decides its score:

- the results channel: records forged at exit, replayed, or written for a test that is not running;
- a later topic: a conftest.py dropped where the next topic's tests would load it;
- the oracle cache: poisoned in the sandbox, in the instructor's folder (the next grading must be
  unchanged), or before the grading started;
- the reference by path: anything in the sandbox that names the instructor's checkout;
- the timing clocks: `lab.timing`'s module-level references rebound (against the real seal).
Each must lose its points or void its topic. See grading/README.md, "What the grader guarantees".
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import textwrap
from pathlib import Path

import jsonschema
import pytest

from grading import runner
from grading.__main__ import main
from grading.guard.seal import Seal

FIXTURES = Path(__file__).resolve().parent / "grading_fixtures"
POINTS = "[inf94]\ntest_answer_matches_the_oracle = 2\ntest_double = 1\n"
SOLVED = (FIXTURES / "attacks" / "solutions" / "inf94" / "toy.py").read_text()

# Finds the grader's recorder in memory (what a student who read grading/plugin.py would do).
FIND_RECORDER = """
import gc, json, os

def recorder():
    return next(o for o in gc.get_objects() if type(o).__name__ == "Recorder" and hasattr(o, "_fd"))

def raw(fd, record):
    os.write(fd, (json.dumps(record) + "\\n").encode())

def passed(nodeid, name):
    return {"kind": "test", "nodeid": nodeid, "name": name, "file": "exercises/inf94/test_inf94.py",
            "outcome": "passed", "message": None, "not_implemented": False, "import_error": False,
            "timed_out": False, "skip_reason": None, "markers": [], "duration_s": 0.01, "user_properties": {}}

ANSWER = "exercises/inf94/test_inf94.py::test_answer_matches_the_oracle"
DOUBLE = "exercises/inf94/test_inf94.py::test_double"
"""


def with_recorder(body: str) -> str:
    return FIND_RECORDER + textwrap.dedent(body)


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A copy of the fake lab with the attacks' topic and its oracle cache folder (built by the grader)."""
    monkeypatch.delenv("LAB_CACHE_DIR", raising=False)
    root = tmp_path / "lab"
    shutil.copytree(FIXTURES / "repo", root, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FIXTURES / "attacks", root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__",
                                                                                                 "README.md"))
    (root / "points.toml").write_text((root / "points.toml").read_text() + "\n" + POINTS)
    return root


def grade(lab: Path, tmp_path: Path, toy: str, topics: str = "inf94", name: str = "sub") -> dict:
    """Grade a submission whose inf94/toy.py is `toy`; returns the JSON scorecard."""
    sub = tmp_path / name
    (sub / "inf94").mkdir(parents=True)
    (sub / "inf94" / "toy.py").write_text(textwrap.dedent(toy))
    out = tmp_path / f"out-{name}"
    code = main(["--root", str(lab), "--points", str(lab / "points.toml"), "--topics", topics, "--submission",
                 str(sub), "--out", str(out), "--json", str(out / "card.json"), "--no-history", "--seed", "3",
                 "--test-timeout", "60", "--topic-timeout", "120"])
    assert code == 0
    return json.loads((out / "card.json").read_text())


def topic(card: dict, name: str = "inf94") -> dict:
    return next(t for t in card["topics"] if t["topic"] == name)


def assert_void(card: dict, says: str) -> None:
    jsonschema.validate(card, json.loads((Path(runner.__file__).parent / "scorecard_schema.json").read_text()))
    t = topic(card)
    assert (t["status"], t["points"]["earned"]) == ("void", 0), f"{t['status']}: {t['message']}"
    assert says in t["message"], t["message"]


def test_the_honest_submission_scores_full(lab, tmp_path):
    t = topic(grade(lab, tmp_path, SOLVED))
    assert (t["status"], t["points"]["earned"]) == ("complete", 3), t["message"]
    assert not (lab / ".lab-cache").is_symlink() and (lab / ".lab-cache" / "oracle.txt").read_text() == "42\n"


# ---------------------------------------------------------------- the results channel
def test_records_forged_at_exit_void_the_topic(lab, tmp_path):
    """Stubs, plus passing records written at exit through a copy of the channel, in sequence."""
    card = grade(lab, tmp_path, with_recorder("""
        import atexit
        _rec = recorder()
        _fd = os.dup(_rec._fd)

        @atexit.register
        def _forge():
            seq = _rec._seq
            for nodeid, name in ((ANSWER, "test_answer_matches_the_oracle"), (DOUBLE, "test_double")):
                raw(_fd, dict(passed(nodeid, name), seq=seq))
                seq += 1

        def answer():
            raise NotImplementedError("inf94: implement answer")

        def double(x):
            raise NotImplementedError("inf94: implement double")
    """))
    assert_void(card, "after the session ended")


def test_a_replayed_record_voids_the_topic(lab, tmp_path):
    """A record written raw into the channel with a sequence number already used."""
    card = grade(lab, tmp_path, with_recorder("""
        def answer():
            raw(recorder()._fd, dict(passed(ANSWER, "test_answer_matches_the_oracle"), seq=1))
            return 41

        def double(x):
            return 2 * x
    """))
    assert_void(card, "out of sequence")


def test_a_result_for_a_test_that_is_not_running_voids_the_topic(lab, tmp_path):
    """The recorder's own write (right sequence number) replaying the first test's result in the second."""
    card = grade(lab, tmp_path, with_recorder("""
        def answer():
            return 42

        def double(x):
            recorder().write(passed(ANSWER, "test_answer_matches_the_oracle"))
            return 0
    """))
    assert_void(card, "which was not running")


def test_a_second_result_for_the_running_test_voids_the_topic(lab, tmp_path):
    """A 'passed' for the running test through the recorder, before the real failure is written."""
    card = grade(lab, tmp_path, with_recorder("""
        def answer():
            recorder().write(passed(ANSWER, "test_answer_matches_the_oracle"))
            return 41

        def double(x):
            return 2 * x
    """))
    assert_void(card, "repeated or forged")


def test_the_channel_is_hidden_from_the_tests_code(lab, tmp_path):
    """No variable names the channel, and every pipe the test process holds is closed on exec (a process
    the student's code starts inherits none: os.system keeps descriptors that are not)."""
    card = grade(lab, tmp_path, """
        import fcntl, os

        def answer():
            pipes = {}
            for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
                try:
                    if fd > 2 and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                        pipes[fd] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
                except OSError:
                    pass
            raise AssertionError(f"PROBE env={'LAB_GRADING_RESULTS' in os.environ} "
                                 f"inheritable={[fd for fd, closed in pipes.items() if not closed]} "
                                 f"high={any(fd >= 64 for fd in pipes)}")

        def double(x):
            return 2 * x
    """)
    message = next(c for c in topic(card)["tests"] if c["name"] == "test_answer_matches_the_oracle")["message"]
    assert "PROBE env=False inheritable=[] high=True" in message, message


def test_the_record_protocol_is_checked_line_by_line():
    def lines(*records):
        return [json.dumps(dict(r, seq=i)).encode() for i, r in enumerate(records)]
    items = {"kind": "collection", "items": [{"nodeid": "a"}, {"nodeid": "b"}]}
    start_a, test_a = {"kind": "start", "nodeid": "a"}, {"kind": "test", "nodeid": "a", "outcome": "passed"}
    good = lines(items, start_a, test_a, {"kind": "session"})
    assert runner.check_records(good)[1] == [] and len(runner.check_records(good)[0]) == 4
    assert runner.check_records(good[:3] + [b'{"kind": "ses'])[1] == []            # cut short by a kill: dropped
    bad = {
        "out of sequence": good[:2] + [good[1]],
        "after the session": good + lines(items, start_a, test_a, {"kind": "session"}, test_a)[4:],
        "unknown record kind": lines(items, {"kind": "verdict"}),
        "not a record": good[:2] + [b"garbage", good[2]],
        "second collection": lines(items, items),
        "unexpected start": lines(items, {"kind": "start", "nodeid": "zzz"}),
        "was not running": lines(items, start_a, test_a, {"kind": "test", "nodeid": "b"}),
        "repeated or forged": lines(items, start_a, test_a, test_a),
    }
    for says, stream in bad.items():
        accepted, tampering = runner.check_records(stream)
        assert tampering and says in tampering[0], f"{says}: {tampering}"


# ---------------------------------------------------------------- one topic against the next
def test_a_conftest_dropped_for_a_later_topic_changes_nothing(lab, tmp_path):
    """inf94's code writes a conftest.py that would pass every test of inf97 (graded next, from its stubs)."""
    sandboxes = set(Path(tempfile.gettempdir()).glob("lab-sandbox-*"))
    card = grade(lab, tmp_path, """
        import os
        from pathlib import Path

        CHEAT = "import pytest\\n\\n@pytest.hookimpl(tryfirst=True)\\ndef pytest_runtest_call(item):\\n" \\
                "    item.runtest = lambda: None\\n"
        for folder in ("exercises/inf97", "exercises", ".", "..", "../stubs/inf97", "../../stubs/inf97"):
            try:
                os.chmod(folder, 0o755)
                Path(folder, "conftest.py").write_text(CHEAT)
            except OSError:
                pass

        def answer():
            return 42

        def double(x):
            return 2 * x
    """, topics="inf94,inf97")
    assert (topic(card)["status"], topic(card)["points"]["earned"]) == ("complete", 3)
    inf97 = topic(card, "inf97")
    assert (inf97["status"], inf97["points"]["earned"]) == ("not started", 0), inf97["message"]
    assert not list(lab.rglob("conftest.py"))[1:], "the instructor's tree got a conftest.py"
    assert set(Path(tempfile.gettempdir()).glob("lab-sandbox-*")) <= sandboxes, "a sandbox outlived its topic"


# ---------------------------------------------------------------- the oracle cache
def test_an_oracle_cache_poisoned_in_the_sandbox_voids_the_topic(lab, tmp_path):
    card = grade(lab, tmp_path, """
        import os
        from pathlib import Path

        cache = Path(os.environ["LAB_CACHE_DIR"])
        os.chmod(cache, 0o755)
        (cache / "oracle.txt").unlink()
        (cache / "oracle.txt").write_text("41\\n")

        def answer():
            return 41

        def double(x):
            return 2 * x
    """)
    assert_void(card, "oracle cache file oracle.txt")


def test_a_poisoned_instructors_cache_is_rebuilt_and_the_next_grading_is_unchanged(lab, tmp_path):
    """A student who found the instructor's cache folder writes a wrong oracle there, and a matching record."""
    cache = lab / ".lab-cache"
    poison = f"""
        import hashlib, json, os
        from pathlib import Path

        cache = Path({str(cache)!r})
        try:
            (cache / "oracle.txt").write_text("41\\n")
            record = json.loads((cache / "trusted-sha256.json").read_text())
            record["files"]["oracle.txt"] = hashlib.sha256(b"41\\n").hexdigest()
            (cache / "trusted-sha256.json").write_text(json.dumps(record))
        except OSError:
            pass

        def answer():
            return 41

        def double(x):
            return 2 * x
    """
    card = grade(lab, tmp_path, poison, name="poisoned")
    assert_void(card, "instructor's oracle cache")
    assert (cache / "oracle.txt").read_text() == "42\n"
    t = topic(grade(lab, tmp_path, SOLVED, name="next"))
    assert (t["status"], t["points"]["earned"]) == ("complete", 3), t["message"]


def test_a_cache_poisoned_before_the_grading_is_rebuilt_from_its_source(lab, tmp_path):
    topic(grade(lab, tmp_path, SOLVED, name="first"))                  # builds and records the cache
    cache = lab / ".lab-cache"
    (cache / "oracle.txt").write_text("41\n")                          # the record still says 42
    t = topic(grade(lab, tmp_path, SOLVED, name="second"))
    assert (t["status"], t["points"]["earned"]) == ("complete", 3), t["message"]
    assert (cache / "oracle.txt").read_text() == "42\n"
    record = json.loads((cache / "trusted-sha256.json").read_text())
    assert record["files"] == {"oracle.txt": hashlib.sha256(b"42\n").hexdigest()}


# ---------------------------------------------------------------- the reference by path
def test_nothing_in_the_sandbox_names_the_instructors_checkout(lab, tmp_path):
    card = grade(lab, tmp_path, """
        import json, os, sys
        from pathlib import Path

        def answer():
            seen = [os.getcwd(), *sys.path, *sys.argv, *os.environ.values()]
            for path in Path.cwd().parent.rglob("*"):
                if path.is_symlink():
                    seen.append("LINK " + os.readlink(path))
            up = [str(p) for p in Path.cwd().parents if (p / "solutions").exists()]
            raise AssertionError("PROBE " + json.dumps({"seen": seen, "solutions": up,
                                                       "cache_is_link": os.path.islink(".lab-cache")}))

        def double(x):
            return 2 * x
    """)
    message = next(c for c in topic(card)["tests"] if c["name"] == "test_answer_matches_the_oracle")["message"]
    probe = json.loads(message.split("PROBE ", 1)[1])
    assert probe["solutions"] == [] and probe["cache_is_link"] is False, probe
    leaks = [s for s in probe["seen"] if str(lab) in s or str(lab.resolve()) in s or s.startswith("LINK ")]
    assert leaks == [], f"the sandbox names the instructor's checkout: {leaks}"
    assert any("lab-sandbox-" in s for s in probe["seen"]), "the probe did not run in a sandbox"


# ---------------------------------------------------------------- the timing clocks (the real seal)
def test_rebinding_a_timing_clock_is_reported_and_undone():
    import grading.guard.seal as seal_module
    import lab.timing as timing
    seal = Seal()
    seal.record()
    names = [n for n in vars(timing) if n.startswith("_") and not n.startswith("__")]
    assert {"_perf_counter", "_median", "_cuda_synchronize", "_CudaEvent", "_event_record"} <= set(names)
    originals = {n: getattr(timing, n) for n in names}
    try:
        for name in names + ["RETRY_BAND", "compare"]:
            value = getattr(timing, name)
            setattr(timing, name, lambda *args, **kwargs: 0.0)
            assert seal.verify() == [f"lab.timing.{name} was replaced"]
            assert getattr(timing, name) is value
        del timing._median
        assert seal.verify() == ["lab.timing._median was replaced"] and timing._median is originals["_median"]
        seal_module.WATCHED["time"] = ()
        assert seal.verify() == ["the contents of grading.guard.seal.WATCHED were changed"]
        assert "perf_counter" in seal_module.WATCHED["time"]
    finally:
        for name, value in originals.items():
            setattr(timing, name, value)


def test_an_environment_inside_the_checkout_is_reported(tmp_path):
    """What the sandbox cannot hide, the grader says: a Python environment inside the graded root."""
    import sys

    from grading import isolate
    assert any("sys.prefix" in line for line in isolate.exposures(Path(sys.prefix).parent))
    assert isolate.exposures(tmp_path) == []
