"""Pytest plugin for the grader: one JSON record per line, written as the session goes.

Loaded with `-p grading.plugin`; it does nothing unless the environment variable named by
`RESULTS_ENV` gives the channel: `fd:N`, the write end of a pipe the grader's parent reads as records
arrive (POSIX), or a file path to append to (elsewhere). The plugin takes the variable out of the
environment, moves the pipe to a high descriptor that is closed on exec (a child process never holds
it) and closes the inherited one. Every record carries `seq`, 0, 1, 2, ... in writing order: the parent
voids the topic on a record out of sequence, repeated, unexpected or after "session" (grading.runner).
Record kinds, in the order they are written:

- "collect_error" (any number): `nodeid`, `message` (e.g. "SyntaxError in exercises/inf10/kv_cache.py
  line 12: invalid syntax"), `not_implemented`, `import_error`;
- "collection" (once, before the first test): `items` [{nodeid, name, file, markers}], `seed`;
- "start" (before each test): `nodeid`;
- "test" (after each test's teardown): `nodeid`, `name` (base name: function, `Class.method`, no
  parameters), `file`, `outcome` (passed | failed | skipped | error), `message` (first line of the
  failure, e.g. "AssertionError: tokens differ at step 3: expected 42, got 17"), `not_implemented`
  (a NotImplementedError, e.g. the stubs' `lab.errors.NotStarted`, anywhere in the exception chain),
  `import_error` (a SyntaxError or ImportError in the chain: the student's module does not load),
  `timed_out` (pytest-timeout fired), `skip_reason`, `not_graded` (skipped by `lab.outcomes.not_graded`:
  this hardware cannot grade it; told by the exception's `grading_status`, never by the reason's text),
  `markers`, `duration_s`, `phases_s` ({"setup": s, "call": s, "teardown": s}: pytest's phases of it),
  `user_properties` (dict; speed tests put `speed` there),
  `speeds` (every speed figure the test recorded, in order: each `speed` property, and with
  LAB_SPEED_REPEAT each further measurement's `speed_repeat`; grading.tools.calibrate reads these);
- "session" (last; absent when the process died): `exitstatus`, `seed`, `hardware`.

Invariants: every record is one JSON object on one line, flushed before the next test starts, so a crash
or a kill mid-topic leaves the records of every finished test readable; a value JSON cannot encode is
written as its repr(); the plugin's own failures never change a test's outcome.
"""
from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from grading import hardware

RESULTS_ENV = "LAB_GRADING_RESULTS"
SPEED_PROPERTIES = ("speed", "speed_repeat")                            # lab.timing / lab.figures record these
_TIMEOUT_TEXT = re.compile(r"^Timeout \(?>")                            # pytest-timeout's failure text
_IGNORED_MARKERS = {"parametrize", "usefixtures", "filterwarnings"}
_NO_FAILURE = {"message": None, "not_implemented": False, "import_error": False, "timed_out": False}


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then its causes, contexts and exception-group members, each once (cycles are cut)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        todo += [current.__cause__, current.__context__]
        todo += list(getattr(current, "exceptions", ()) or ())
    return chain


def first_line(exc: BaseException) -> str:
    """"Type: first non-empty line of the message", or just "Type" when there is no message."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _relative(path: str | os.PathLike, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return str(path)


def _where(exc: BaseException, root: Path) -> str:
    """" in FILE line N" for the innermost frame inside the repo (not a virtualenv), else ""."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" in {_relative(exc.filename, root)} line {exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        rel = _relative(frame.filename, root)
        if not os.path.isabs(rel) and "site-packages" not in rel and not rel.startswith("."):
            return f" in {rel} line {frame.lineno}"
    return ""


def describe_exception(exc: BaseException, root: Path, *, root_cause: bool = False) -> dict:
    """Classify a failure. `root_cause` reports the innermost cause (for collection errors, whose
    outer exception is pytest's CollectError wrapping the real one)."""
    chain = exception_chain(exc)
    not_implemented = any(isinstance(e, NotImplementedError) for e in chain)    # lab.errors.NotStarted is one
    load_error = next((e for e in chain if isinstance(e, (SyntaxError, ImportError))), None)
    shown = exc
    if root_cause:
        shown = load_error or chain[-1]
    timed_out = type(exc).__name__ == "Failed" and bool(_TIMEOUT_TEXT.match(str(exc)))
    if isinstance(shown, SyntaxError):
        message = f"SyntaxError{_where(shown, root)}: {shown.msg}"
    elif timed_out:
        message = str(exc).splitlines()[0]       # "Timeout (>2.0s) from pytest-timeout."
    else:
        where = _where(shown, root).strip() if root_cause else ""
        message = first_line(shown) + (f" ({where})" if where else "")
    return {"message": message, "not_implemented": bool(not_implemented),
            "import_error": load_error is not None, "timed_out": timed_out}


def _longrepr_line(report) -> str | None:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr or "")
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def _error_line(report) -> str:
    """The last `E   ...` line of a collection error's text (the exception), else its first line."""
    lines = str(report.longrepr or "").splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ") and line[1:].strip()]
    return errors[-1] if errors else (_longrepr_line(report) or "collection error")


def _item_info(item: pytest.Item, root: Path) -> dict:
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    cls = getattr(item, "cls", None)
    markers = sorted({m.name for m in item.iter_markers()} - _IGNORED_MARKERS)
    return {"nodeid": item.nodeid, "name": f"{cls.__name__}.{name}" if cls else name,
            "file": _relative(item.path, root), "markers": markers}


def open_channel(spec: str) -> int:
    """A private descriptor for the channel `spec` ("fd:N" or a path): for a pipe, N moved to a high number,
    closed on exec, N itself closed; a file is opened for appending."""
    if not spec.startswith("fd:"):
        return os.open(spec, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    inherited = int(spec[3:])
    try:
        import fcntl
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        high = max(64, min(soft if soft > 0 else 1024, 4096) - 1 - (os.getpid() % 32))
        fd = fcntl.fcntl(inherited, fcntl.F_DUPFD_CLOEXEC, high)
    except (ImportError, OSError, ValueError):
        fd = os.dup(inherited)                  # non-inheritable by default (PEP 446)
    os.close(inherited)
    return fd


class Recorder:
    """Writes the records of one pytest session to a channel (see `open_channel`), one line each."""

    def __init__(self, spec: str, config: pytest.Config):
        self._fd = open_channel(spec)
        self._seq = 0
        self._config = config
        self._root = Path(config.rootpath).resolve()
        self._items: dict[str, dict] = {}
        self._failures: dict[str, dict] = {}
        self._pending: dict[str, dict] = {}
        self._not_graded: set[str] = set()

    def write(self, record: dict) -> None:
        record = {**record, "seq": self._seq}
        self._seq += 1
        try:
            line = json.dumps(record, default=repr)
        except (TypeError, ValueError):     # e.g. a property that contains itself: keep its repr
            line = json.dumps({k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
                               for k, v in record.items()})
        data = (line + "\n").encode("utf-8")
        try:
            while data:                     # one line, written whole before the next record
                data = data[os.write(self._fd, data):]
        except (OSError, ValueError):       # pipe closed or disk full: never break the test run
            pass

    def _seed(self):
        return getattr(self._config, "_lab_seed", None)

    def pytest_exception_interact(self, node, call, report) -> None:
        if isinstance(report, pytest.CollectReport) and call.excinfo is not None:
            self._failures[report.nodeid] = describe_exception(call.excinfo.value, self._root, root_cause=True)

    def pytest_collectreport(self, report) -> None:
        if not report.failed:
            return
        info = self._failures.pop(report.nodeid, None) or dict(_NO_FAILURE, message=_error_line(report))
        info.pop("timed_out", None)
        self.write({"kind": "collect_error", "nodeid": report.nodeid, **info})

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._items = {item.nodeid: _item_info(item, self._root) for item in session.items}
        self.write({"kind": "collection", "items": list(self._items.values()), "seed": self._seed()})

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.write({"kind": "start", "nodeid": nodeid})

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.excinfo is not None and report.failed and item.nodeid not in self._failures:
            self._failures[item.nodeid] = describe_exception(call.excinfo.value, self._root)
        if call.excinfo is not None and report.skipped and \
                getattr(call.excinfo.value, "grading_status", None) == "not_graded" and \
                not _raised_in_student_code(call.excinfo):
            self._not_graded.add(item.nodeid)
        return report

    def pytest_runtest_logreport(self, report) -> None:
        state = self._pending.setdefault(report.nodeid, {"outcome": "passed", "duration_s": 0.0, "skip_reason": None,
                                                         "user_properties": {}, "speeds": [], "phases_s": {}})
        state["duration_s"] += report.duration
        state["phases_s"][report.when] = round(report.duration, 6)
        if report.when == "teardown":           # user_properties accumulate over the phases: read them once
            state["user_properties"].update(dict(report.user_properties))
            state["speeds"] = [value for key, value in report.user_properties if key in SPEED_PROPERTIES]
        if report.skipped and state["outcome"] == "passed":
            _record_skip(state, report)
        elif report.failed and state["outcome"] in ("passed", "skipped"):
            state["outcome"] = "failed" if report.when == "call" else "error"
            state.setdefault("fallback", _longrepr_line(report))
        if report.when == "teardown":
            self._finish(report.nodeid, self._pending.pop(report.nodeid))

    def _finish(self, nodeid: str, state: dict) -> None:
        info = self._items.get(nodeid) or {"nodeid": nodeid, "name": nodeid.split("::")[-1].split("[")[0],
                                           "file": nodeid.split("::")[0], "markers": []}
        failure: dict[str, Any] = dict(_NO_FAILURE)
        if state["outcome"] in ("failed", "error"):
            failure = self._failures.pop(nodeid, {}) or dict(
                _NO_FAILURE, message=state.get("fallback") or state.get("xfail"))
        self.write({"kind": "test", **info, "outcome": state["outcome"], **failure,
                    "skip_reason": state["skip_reason"], "not_graded": state["outcome"] == "skipped" and
                    nodeid in self._not_graded, "duration_s": round(state["duration_s"], 6),
                    "phases_s": state["phases_s"], "user_properties": state["user_properties"],
                    "speeds": state["speeds"]})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        self.write({"kind": "session", "exitstatus": int(exitstatus), "seed": self._seed(),
                    "hardware": hardware.describe() if "torch" in sys.modules else None})

    def pytest_unconfigure(self) -> None:
        try:
            os.close(self._fd)              # the parent sees the end of the channel now
        except OSError:
            pass


def _raised_in_student_code(excinfo) -> bool:
    """Whether a frame of the exception's traceback is in the implementation under test (a module of
    `<impl root>/infNN/`, not a test file): the student's code cannot declare itself "not graded"."""
    try:
        from lab.impl import root_folder
        root = root_folder().resolve()
    except Exception:               # not the lab (the grader's own fixtures): nothing to tell apart
        return False
    for entry in excinfo.traceback:
        try:
            path = Path(str(entry.path)).resolve()
        except (OSError, ValueError):
            continue
        if path.is_relative_to(root) and not path.name.startswith(("test_", "conftest")):
            return True
    return False


def _record_skip(state: dict, report) -> None:
    """A skip, or an expected failure (xfail), which earns nothing and so counts as failed."""
    if hasattr(report, "wasxfail"):
        state["outcome"] = "failed"
        state["xfail"] = f"xfail: {report.wasxfail}".rstrip(": ")
        return
    state["outcome"] = "skipped"
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    state["skip_reason"] = reason.removeprefix("Skipped: ")


def pytest_configure(config: pytest.Config) -> None:
    spec = os.environ.pop(RESULTS_ENV, None)    # the tests' code has no business knowing where records go
    if spec and not config.pluginmanager.has_plugin("lab-grading-recorder"):
        config.pluginmanager.register(Recorder(spec, config), "lab-grading-recorder")
