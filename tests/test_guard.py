"""The anti-cheat checks (grading/guard/): bans on library shortcuts, static (scan.py, at collection) and
at run time (runtime.py), the timing seal (seal.py), what lab.timing reports and re-checks, who may import
solutions, the static audit; and that no hook of the guard can re-enter itself."""
from __future__ import annotations

import importlib.util
import itertools
import os
import statistics
import subprocess
import sys
import threading
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grading.guard import bans, runtime
from grading.guard.scan import audit_source, mentions
from grading.guard.seal import Seal
from lab.impl import REPO_ROOT, solutions_allowed

GUARD_FIXTURE = Path(__file__).resolve().parent / "grading_fixtures" / "guard"


@pytest.fixture(scope="module")
def guarded_outcomes(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """test name -> (passed | failed | error, message) of the guard fixture, run in its own pytest."""
    report = tmp_path_factory.mktemp("guard") / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", str(GUARD_FIXTURE / "test_guarded.py"), str(GUARD_FIXTURE / "inf93"),
           "--impl", str(GUARD_FIXTURE / "impl"), "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k not in ("LAB_IMPL", "PYTEST_ADDOPTS")})
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("error") if case.find("error") is not None else case.find("failure")
        state = "passed" if bad is None else "error" if bad.tag == "error" else "failed"
        if case.get("name") not in outcomes or state == "error":      # a teardown error comes as a second entry
            outcomes[case.get("name")] = (state, "" if bad is None else f"{bad.get('message')}\n{bad.text}")
    return outcomes


@pytest.mark.parametrize("name, state, says", [
    ("test_passes_the_oracle_may_call_what_it_bans", "passed", ""),
    ("test_passes_an_alias_imported_before_any_ban", "passed", ""),
    ("test_passes_without_bans_the_same_code_runs", "passed", ""),
    ("test_fails_student_calls_a_banned_callable", "failed",
     "your code may not call json.dumps (tests/grading_fixtures/guard/impl/inf93/student.py line 12); "
     "dump it yourself"),
    ("test_fails_student_swallows_the_banned_error", "failed",
     "BannedError: this test: your code may not call json.dumps"),
    ("test_fails_student_holds_an_alias", "failed", "your code may not use json.dumps (tests/grading_fixtures/guard/"
                                                    "impl/inf93/aliased.py holds it as my_dumps)"),
    ("test_fails_student_calls_from_a_thread", "failed", ""),
    ("test_fails_student_imports_a_banned_module", "failed", "your code may not use csv (tests/grading_fixtures/"),
    ("test_fails_student_imports_a_banned_module_not_loaded_yet", "failed",
     "your code may not import sched (tests/grading_fixtures/guard/impl/inf93/importer.py line 7)"),
    ("test_static_fails_a_mention_without_running", "failed",
     "BannedError: inf93: your code may not use json.dumps: tests/grading_fixtures/guard/impl/inf93/aliased.py "
     "line 1 mentions json.dumps; dump it yourself"),
    ("test_passes_outside_the_bans_patterns", "passed", ""),
    ("test_fails_student_reaches_a_banned_module_through_sys_modules", "failed", "sneaky.py line 5 mentions csv"),
    ("test_errors_student_patches_the_clock", "error", "time.perf_counter was replaced during this test"),
    ("test_passes_the_clock_was_put_back", "passed", ""),
    ("test_errors_student_rebinds_a_timing_clock", "error", "lab.timing._perf_counter was replaced during this test"),
    ("test_passes_the_timing_clock_was_put_back", "passed", ""),
    ("test_errors_student_edits_the_seals_tables", "error", "the contents of grading.guard.seal.WATCHED were changed"),
    ("test_passes_the_seals_tables_were_put_back", "passed", ""),
    ("test_passes_without_bans_in_the_interpreter", "passed", ""),
    ("test_fails_student_calls_a_banned_callable_in_the_interpreter", "failed",
     "BannedError: this test: your code may not call json.dumps (tests/grading_fixtures/guard/impl/inf93/student.py "
     "line 12); dump it yourself"),
    ("test_fails_student_swallows_the_banned_error_in_the_interpreter", "failed",
     "BannedError: this test: your code may not call json.dumps"),
    ("test_fails_student_imports_solutions_in_the_interpreter", "failed",
     "importing 'solutions' is not allowed while grading a student's code"),
])
def test_guard_stops_shortcuts_only_in_the_students_code(guarded_outcomes, name, state, says):
    got_state, message = guarded_outcomes[name]
    assert got_state == state, f"{name}: expected {state}, got {got_state}: {message[:500]}"
    assert says in message, f"{name}: expected the message to say {says!r}, got {message[:500]}"


def test_mentions_resolve_import_aliases_and_skip_docstrings():
    source = ('"""Uses transformers? No."""\nimport torch.nn.functional as F\nfrom lab import oracle as o\n'
              'import numpy\n\ndef f(x):\n    """scaled_dot_product_attention in a docstring"""\n'
              '    getattr(numpy, "percentile")\n    return F.scaled_dot_product_attention(x, x, x), o.hf_greedy\n')
    found = mentions(source)
    assert found["torch.nn.functional.scaled_dot_product_attention"] == 9
    assert found["lab.oracle.hf_greedy"] == 9 and found["lab.oracle"] == 3 and found["percentile"] == 8
    assert "transformers" not in found and not any("docstring" in k for k in found)


def test_targets_are_modules_or_callables():
    assert bans.is_module_target("transformers") and bans.is_module_target("flash_attn_not_installed")
    assert bans.is_module_target("lab.oracle")
    assert not bans.is_module_target("torch.nn.functional.scaled_dot_product_attention")
    assert not bans.is_module_target("lab.model.LlamaModel.__init__")
    assert bans.names_nothing("torch.nn.functional.scaled_dot_attention") and not bans.names_nothing("flash_attn")
    assert bans.expand(["@int8-shortcuts", "torch.ao"])[:len(bans.INT8_SHORTCUTS)] == list(bans.INT8_SHORTCUTS)
    with pytest.raises(ValueError, match="known: @library-attention"):
        bans.expand(["@int9-shortcuts"])


def test_only_the_reference_may_import_solutions(tmp_path):
    assert solutions_allowed("solutions") and not solutions_allowed("exercises")
    assert not solutions_allowed(str(REPO_ROOT / "tests" / "planted" / "inf00"))     # planted: a copy, no import
    assert not solutions_allowed(str(tmp_path))


def test_seal_notices_and_undoes_a_patch(monkeypatch):
    seal = Seal()
    seal.record()
    original = statistics.median
    monkeypatch.setattr(statistics, "median", lambda xs: 0.0)
    assert seal.verify() == ["statistics.median was replaced"]
    assert statistics.median is original and seal.verify() == []


def test_compare_reports_both_figures_and_checks_unpredictable_rounds(monkeypatch):
    """A fake clock: the baseline takes 2.0 s, the candidate 1.0 s; the threshold 2.05 is within 5%."""
    import lab.timing as timing
    ticks = itertools.count()
    now = {"t": 0.0}

    def clock():
        return now["t"]

    def work(seconds):
        def run(i):
            now["t"] += seconds
            return i
        return run

    monkeypatch.setattr(timing, "_perf_counter", clock)
    checked = []
    result = timing.compare(work(1.0), work(2.0), threshold=2.05, what="fake", device_type="cpu",
                            make_inputs=lambda: (next(ticks),), check=lambda out, args: checked.append(out),
                            rounds=9, warmup=1)
    assert result.retried and result.first_ratio == pytest.approx(2.0) and result.rounds == 18
    assert "measured twice, the first time 2.00x" in result.message()
    assert len(checked) == 4 + 4, "first, last and two random rounds of each measurement are re-checked"
    # where the seconds went (grading.tools.gpu_check prints it): one warm-up pair, then 9 + 18 paired rounds
    assert (result.warmup_s, result.measuring_s) == (3.0, 81.0)
    assert result.as_dict()["warmup_s"] == 3.0


def test_audit_flags_code_written_to_fool_the_grader():
    source = ("import sys, ctypes\nfrom lab import timing\n\ndef f():\n    frame = sys._getframe(1)\n"
              "    return sys.modules['solutions'], frame.f_back\n")
    whats = " | ".join(what for _, what in audit_source(source))
    for flag in ("imports ctypes", "imports lab.timing", "uses sys._getframe", "uses sys.modules",
                 "uses frame.f_back", "mentions 'solutions'"):
        assert flag in whats, f"{flag!r} not flagged in: {whats}"
    assert audit_source("import torch\n\ndef f(x):\n    return torch.relu(x)\n") == []


def test_static_scan_covers_the_running_topic_only(tmp_path, monkeypatch):
    """`pytest exercises --impl solutions` loads every topic's modules into one process: inf01's profiler
    mentioning the lab's cache must not fail inf10, which bans it; inf10's own modules still must."""
    for topic in ("inf01", "inf10"):
        path = tmp_path / topic / "mod.py"
        path.parent.mkdir()
        path.write_text("import csv\n")
        module = types.ModuleType(f"_scan_{topic}")
        module.__file__ = str(path)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(runtime, "code_kind",
                        lambda p: runtime.STUDENT if p.startswith(str(tmp_path)) else runtime.OTHER)
    runtime.take_violations()
    with runtime.banned("csv", topic="inf10"):
        found = runtime.take_violations()
    assert len(found) == 1 and "inf10/mod.py line 1 mentions csv" in found[0], found
    with runtime.banned("csv", topic="this test"):                 # a test outside a topic: every module
        assert len(runtime.take_violations()) == 2


STUDENT_SHORTCUTS = ("import json\n\n\ndef dumps(x):\n    return json.dumps(x)\n\n\n"
                     "def load_banned():\n    import sched\n    return sched\n\n\n"
                     "def load_allowed():\n    import wave\n    return wave\n")


def test_no_hook_of_the_guard_imports_or_touches_files(tmp_path, monkeypatch):
    """Issue 9's regression test: on Python 3.12 the import hook called code_kind, which built a pathlib.Path,
    whose constructor imports ntpath lazily; the import entered the hook again (RecursionError). Here, on any
    Python, lazily imported modules are dropped from sys.modules and a tripwire records every import, file
    system access or path resolution made while a hook (the finder, a wrapper, what they call) is on the
    stack, while the student's code imports and calls around the bans."""
    student = tmp_path / "inf93"
    student.mkdir()
    (student / "shortcut.py").write_text(STUDENT_SHORTCUTS)
    runtime.install(["json.dumps"])
    hooks = {runtime.BanFinder.find_spec.__code__, runtime._check_call.__code__, runtime.code_kind.__code__,
             runtime._violation.__code__, runtime._where.__code__, runtime._shown.__code__,
             runtime._installed["json.dumps"][3].__code__}
    touched: list[str] = []

    def in_hook() -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code in hooks:
                return True
            frame = frame.f_back
        return False

    class Tripwire:
        def find_spec(self, name, path=None, target=None):
            if in_hook():
                touched.append(f"import {name}")
            return None

    def spy(name, original):
        def spied(*args, **kwargs):
            if in_hook():
                touched.append(f"{name}{args}")
            return original(*args, **kwargs)
        return spied

    spec = importlib.util.spec_from_file_location("_guard_reentry_shortcut", student / "shortcut.py")
    shortcut = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shortcut)
    runtime.set_roots(str(tmp_path))                     # install time: the student's root is tmp_path
    try:
        for name in ("ntpath", "sched", "wave", "pathlib"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        # Only the guard's finder and the default ones stay: pytest's assertion rewriter builds a PurePath in
        # its find_spec, whose constructor imports ntpath on Python >= 3.12.3, so with ntpath dropped that
        # foreign hook would recurse on its own (seen on the GPU machine's 3.12.3, 2026-12-06).
        finders = [f for f in sys.meta_path if type(f).__name__ != "AssertionRewritingHook"]
        monkeypatch.setattr(sys, "meta_path", [Tripwire(), *finders])
        for owner, name in ((os, "stat"), (os, "lstat"), (os, "getcwd"), (os.path, "realpath"),
                            (os.path, "abspath"), (os.path, "exists")):
            monkeypatch.setattr(owner, name, spy(name, getattr(owner, name)))
        runtime.take_violations()
        with runtime.banned("json.dumps", "sched", reason="dump it yourself", topic="inf93"):
            assert shortcut.json.dumps([1]) == "[1]"                     # the test's own call goes through
            with pytest.raises(bans.BannedError, match=r"your code may not call json.dumps \(.*shortcut.py line 5\)"):
                shortcut.dumps([1])
            with pytest.raises(ImportError, match="your code may not import sched"):
                shortcut.load_banned()
            assert shortcut.load_allowed().__name__ == "wave"           # an import the bans allow
            errors: list[BaseException] = []

            def in_a_thread():
                try:
                    shortcut.dumps([2])
                except bans.BannedError as exc:
                    errors.append(exc)
            thread = threading.Thread(target=in_a_thread)
            thread.start()
            thread.join()
            assert len(errors) == 1
            found = runtime.take_violations()
        monkeypatch.undo()
    finally:
        runtime.set_roots()
    assert not touched, f"a hook of the guard imported or touched the file system: {touched[:12]}"
    assert len(found) == 3 and all(f.startswith("inf93: your code may not") for f in found), found


def test_topic_bans_apply_to_hidden_tests_and_name_real_targets():
    from grading import topics
    inf10 = topics.for_test(REPO_ROOT / "grading" / "hidden" / "inf10" / "test_hidden_inf10.py")
    assert inf10 is not None and "lab.cache" in inf10.bans_for("test_hidden_decode_edge_lengths")[0]
    inf11 = topics.topic(REPO_ROOT, "inf11")
    assert inf11.bans_for("test_rms_norm_matches_float64")[0] == [
        "torch.nn.functional.rms_norm", "torch.rms_norm", "lab.model.RMSNorm.forward"]
    assert inf11.bans_for("test_float_format_rejects_bad_widths") == ([], "")
    for found in topics.all_topics().values():
        topics.check_targets(found)
