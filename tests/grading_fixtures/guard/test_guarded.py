"""Run by tests/test_guard.py as `pytest test_guarded.py inf93 --impl guard/impl`: each test's name says
whether the guard must let it pass or make it fail. `student` stands for the student's code. The bans here
are legacy markers (run-time checks only); inf93/test_static.py has its bans in inf93/topic.toml."""
import importlib
import json
import time

import pytest

from lab.impl import Topic
from lab.triton_interpreter import run_in_interpreter

impl = Topic("inf93")
ORIGINAL_CLOCK = time.perf_counter


@pytest.mark.bans("json.dumps", reason="dump it yourself")
def test_passes_the_oracle_may_call_what_it_bans():
    assert json.dumps([1]) == "[1]" and impl.student.honest(1) == 2


@pytest.mark.bans("json.dumps", reason="dump it yourself")
def test_fails_student_calls_a_banned_callable():
    assert impl.student.calls_dumps([1]) == "[1]"


@pytest.mark.bans("json.dumps")
def test_fails_student_swallows_the_banned_error():
    assert impl.student.swallows([]) == "[]"


def test_passes_an_alias_imported_before_any_ban():
    assert impl.aliased.my_dumps([1]) == "[1]"


@pytest.mark.bans("json.dumps")
def test_fails_student_holds_an_alias():
    assert impl.aliased.my_dumps([1]) == "[1]"          # the test calls it: only the alias gives it away


@pytest.mark.bans("json.dumps")
def test_fails_student_calls_from_a_thread():
    assert impl.student.dumps_in_a_thread([1]) == "[1]"


@pytest.mark.bans("csv")
def test_fails_student_reaches_a_banned_module_through_sys_modules():
    importlib.import_module("csv")                        # the test may import it
    assert impl.sneaky.reads_sys_modules() is not None


@pytest.mark.bans("csv")
def test_fails_student_imports_a_banned_module():
    assert impl.importer.imports_csv() is not None        # csv is loaded already: the scan after the test


@pytest.mark.bans("sched")
def test_fails_student_imports_a_banned_module_not_loaded_yet():
    assert impl.importer.imports_sched() is not None      # the meta-path finder refuses it


def test_passes_without_bans_the_same_code_runs():
    assert impl.student.calls_dumps([1]) == "[1]" and impl.importer.imports_csv() is not None


def test_errors_student_patches_the_clock():
    impl.student.patches_the_clock()


def test_passes_the_clock_was_put_back():
    assert time.perf_counter is ORIGINAL_CLOCK


def test_errors_student_rebinds_a_timing_clock():
    impl.student.rebinds_the_timing_clock()


def test_passes_the_timing_clock_was_put_back():
    import lab.timing
    assert lab.timing._perf_counter is ORIGINAL_CLOCK


def test_errors_student_edits_the_seals_tables():
    impl.student.edits_the_seals_tables()


def test_passes_the_seals_tables_were_put_back():
    import grading.guard.seal as seal_module
    assert "time" in seal_module.WATCHED


# ---- in the Triton interpreter's child process (lab.triton_interpreter): the same bans and blocker apply
def interpreted_calls_dumps(seed):              # module level: the child calls it by name
    assert impl.student.calls_dumps([seed]) == f"[{seed}]"


def interpreted_swallows(seed):
    assert impl.student.swallows([]) == "[]"


def interpreted_imports_solutions(seed):
    assert impl.student.imports_solutions() is not None


def test_passes_without_bans_in_the_interpreter(seed):
    run_in_interpreter(__file__, "interpreted_calls_dumps", seed)


@pytest.mark.bans("json.dumps", reason="dump it yourself")
def test_fails_student_calls_a_banned_callable_in_the_interpreter(seed):
    run_in_interpreter(__file__, "interpreted_calls_dumps", seed)


@pytest.mark.bans("json.dumps")
def test_fails_student_swallows_the_banned_error_in_the_interpreter(seed):
    run_in_interpreter(__file__, "interpreted_swallows", seed)


def test_fails_student_imports_solutions_in_the_interpreter(seed):
    run_in_interpreter(__file__, "interpreted_imports_solutions", seed)
