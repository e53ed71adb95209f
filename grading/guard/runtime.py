"""The run-time half of the bans: what a static scan cannot see (a call through an alias made by lab code,
a thread, a module imported by a computed name) is stopped while the test runs.

    with banned("numpy.percentile", reason="write the interpolation yourself"): ...   # in a test
    activate(targets, reason, topic) / restore(previous)                              # the pytest plugin

The student's code is every file of the implementation root under test (exercises/, a submission, a
planted copy) but its tests, conftest.py and notebook.py. While a ban is active:
- a banned callable, replaced by a wrapper when bans are installed (so an alias taken at import is the
  wrapper too), raises BannedError when a student frame is on the stack, or when it runs in another thread
  with no test code on the stack; the test's own calls (its oracle) and pytest's go through;
- a banned module that is not loaded yet cannot be imported by the student's code: a `sys.meta_path`
  finder refuses it (lab code the student calls may import what it needs); one that is loaded already is
  the static scan's (grading/guard/scan.py: the source may not mention it) and `scan_student_modules`'s
  (a student module may not hold it, a banned callable or an alias of one in its globals);
- a violation the student's code catches and swallows still fails the test (grading/guard/plugin.py).

Re-entrancy: Python consults the finder on every import and the wrappers may run anywhere, even while an
import is half done. So nothing on those paths imports, touches the file system or builds pathlib objects
(on Python 3.12 `pathlib.Path()` imports `ntpath` lazily: a hook that built one entered itself again and
ended in RecursionError). Whose code a frame is comes from string prefixes computed with os.path when the
bans are installed; the only work per check is string comparisons and dict lookups.

This stops shortcuts, not code written to defeat it (reading frames or closures); the grader's audit
(grading/guard/scan.py) flags such code.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import types

from grading.guard.bans import BannedError, BannedImport, expand, is_module_target, resolve
from grading.guard.scan import banned_mentions

STUDENT, TEST, OTHER = "student", "test", "other"

_state = types.SimpleNamespace(calls=frozenset(), modules=(), reason="", topic="this test", violations=[])
_roots = types.SimpleNamespace(student=(), repo=(), tests=(), cwd="", skip=())       # string prefixes
_installed: dict[str, tuple[object, str, object, object]] = {}     # target -> (owner, attr, original, wrapper)
_target_of: dict[int, str] = {}                                     # id(original or wrapper) -> target
_kinds: dict[str, str] = {}


# ------------------------------------------------------------------------------------------ whose code
def _prefixes(*paths: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(os.path.join(f(p), "") for p in paths for f in (os.path.abspath, os.path.realpath)))


def set_roots(student: str | None = None) -> None:
    """Compute the string prefixes that tell whose code a file is: `student` (default: the implementation
    root under test, LAB_IMPL) and the lab's tests. Call when bans are installed, never from a hook."""
    from lab.impl import root_folder
    from lab.paths import REPO_ROOT
    if student is None:
        try:
            student = str(root_folder())
        except ValueError:          # LAB_IMPL names no folder: there is no student code to tell apart
            student = None
    repo = str(REPO_ROOT)
    _roots.student = _prefixes(student) if student else ()
    _roots.repo = _prefixes(repo)
    _roots.tests = _prefixes(os.path.join(repo, "tests"), os.path.join(repo, "grading", "hidden"))
    _roots.cwd = os.path.join(os.getcwd(), "")
    _roots.skip = ("<frozen", os.path.dirname(importlib.__file__) + os.sep)      # the import machinery
    _kinds.clear()


def code_kind(filename: str) -> str:
    """STUDENT for a file of the implementation under test (not its tests), TEST for the lab's tests and
    conftest files, OTHER for everything else (lab/, libraries). String work only, cached per file name."""
    kind = _kinds.get(filename)
    if kind is None:
        path = filename if filename.startswith(os.sep) or not filename else _roots.cwd + filename
        name = path.rpartition(os.sep)[2]
        is_test_file = name.startswith("test_") or name == "conftest.py"
        if path.startswith(_roots.student) and _roots.student and not is_test_file and name != "notebook.py":
            kind = STUDENT
        elif path.startswith(_roots.repo) and _roots.repo and (is_test_file or path.startswith(_roots.tests)):
            kind = TEST
        else:
            kind = OTHER
        _kinds[filename] = kind
    return kind


def _shown(filename: str) -> str:
    for prefix in _roots.repo:
        if filename.startswith(prefix):
            return filename[len(prefix):].replace(os.sep, "/")
    return filename


def _where(frame) -> str:
    return f"{_shown(frame.f_code.co_filename)} line {frame.f_lineno}"


def _violation(text: str, error: type[BannedError] = BannedError) -> BannedError:
    message = f"{_state.topic}: {text}" + (f"; {_state.reason}" if _state.reason else "")
    _state.violations.append(message)
    return error(message)


# ----------------------------------------------------------------------------------- banned callables
def _check_call(target: str) -> None:
    __tracebackhide__ = True
    frame: types.FrameType | None = sys._getframe(2)
    tested = False
    while frame is not None:
        kind = code_kind(frame.f_code.co_filename)
        if kind == STUDENT:
            raise _violation(f"your code may not call {target} ({_where(frame)})")
        tested = tested or kind == TEST
        frame = frame.f_back
    if not tested and threading.current_thread() is not threading.main_thread():
        raise _violation(f"{target} was called from a thread outside the test's own code")


def _wrapper(target: str, original):
    def guarded(*args, **kwargs):
        __tracebackhide__ = True
        if target in _state.calls:
            _check_call(target)
        return original(*args, **kwargs)
    for attr in ("__name__", "__qualname__", "__doc__", "__module__",
                 "cache_clear", "cache_info"):          # a functools.cache'd target keeps its cache controls
        with contextlib.suppress(AttributeError, TypeError):
            setattr(guarded, attr, getattr(original, attr))
    return guarded


# ------------------------------------------------------------------------------------- banned modules
def _module_banned(name: str) -> str | None:
    for module in _state.modules:
        if name == module or name.startswith(module + "."):
            return module
    return None


class BanFinder:
    """A `sys.meta_path` finder that refuses a banned module to the student's code. It only answers
    "not mine" (None) or raises; it never imports, reads files or builds paths (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        __tracebackhide__ = True
        if not _state.modules:
            return None
        banned = _module_banned(fullname)
        if banned is None:
            return None
        frame: types.FrameType | None = sys._getframe(1)   # the importing frame: the first outside imports
        while frame is not None and frame.f_code.co_filename.startswith(_roots.skip):
            frame = frame.f_back
        if frame is not None and code_kind(frame.f_code.co_filename) == STUDENT:
            raise _violation(f"your code may not import {banned} ({_where(frame)})", BannedImport)
        return None


_finder = BanFinder()


# ------------------------------------------------------------------------------------------ install
def install(targets) -> None:
    """Compute the prefixes, put wrappers on the banned callables and the finder in place (idempotent)."""
    if not _roots.repo:
        set_roots()
    for target in expand(targets):
        if target in _installed or is_module_target(target):
            continue
        found = resolve(target)
        if found is None:
            raise ValueError(f"cannot ban {target!r}: it names neither a module nor a callable")
        owner, attr, original = found
        wrapper = _wrapper(target, original)
        setattr(owner, attr, wrapper)
        _installed[target] = (owner, attr, original, wrapper)
        _target_of[id(original)] = _target_of[id(wrapper)] = target
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Restore every wrapped callable and take the finder away."""
    for owner, attr, original, _ in _installed.values():
        setattr(owner, attr, original)
    _installed.clear()
    _target_of.clear()
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_finder)


# ------------------------------------------------------------------------------ after the test: held
def _held(value) -> str | None:
    """The banned target a value is, wraps (partial, functools.wraps, bound method) or comes from."""
    try:
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and _module_banned(name):
            return _module_banned(name)
        for _ in range(6):
            if id(value) in _target_of:
                return _target_of[id(value)] if _target_of[id(value)] in _state.calls else None
            value = next((getattr(value, a) for a in ("func", "__wrapped__", "__func__") if hasattr(value, a)), None)
    except Exception:  # noqa: BLE001 - an object whose attributes raise holds nothing we know
        return None
    return None


def _scan_module(module: types.ModuleType, path: str) -> None:
    shown = _shown(path)
    for line, name, banned in banned_mentions(path, _state.modules):
        _violation(f"your code may not use {banned} ({shown} line {line} mentions {name})")
        return
    values = list(vars(module).items())
    for owner_name, value in list(values):
        if isinstance(value, type) and value.__module__ == module.__name__:
            values += [(f"{owner_name}.{k}", getattr(v, "__func__", v)) for k, v in vars(value).items()]
    for name, value in values:
        held = _held(value) if not name.startswith("__") else None
        if held:
            _violation(f"your code may not use {held} ({shown} holds it as {name})")
            return


def scan_student_modules() -> None:
    """After a test (never from an import or a call): record a violation for each loaded student module
    of the running test's topic that mentions a banned module or holds a banned target (every student
    module when the topic is unknown). Modules of other topics are left alone: in one pytest session over
    several topics, inf01's profiler may well mention the lab's cache that inf10 bans."""
    if not (_state.modules or _state.calls):
        return
    topic = _state.topic if _state.topic.startswith("inf") else None
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or code_kind(path) != STUDENT:
            continue
        if topic is None or os.path.basename(os.path.dirname(path)) == topic:
            _scan_module(module, path)


# ------------------------------------------------------------------------------------------ activation
def activate(targets, reason: str = "", topic: str = "this test") -> tuple:
    """Ban `targets` from now on (after installing them); returns what to pass to `restore`."""
    targets = expand(targets)
    install(targets)
    previous = (_state.calls, _state.modules, _state.reason, _state.topic)
    modules = tuple(t for t in targets if t not in _installed)
    _state.calls = _state.calls | {t for t in targets if t in _installed}
    _state.modules = tuple(dict.fromkeys(_state.modules + modules))
    _state.reason, _state.topic = reason or _state.reason, topic
    _export()
    scan_student_modules()
    return previous


def restore(previous: tuple) -> None:
    _state.calls, _state.modules, _state.reason, _state.topic = previous
    _export()


def active() -> tuple[frozenset, tuple]:
    """(banned callables, banned modules) in force now."""
    return _state.calls, _state.modules


def _export() -> None:
    """LAB_GUARD: the bans in force, for a child process the test starts (`install_from_env`)."""
    if _state.calls or _state.modules:
        lines = [_state.topic, _state.reason, *sorted(_state.calls), *_state.modules]
        os.environ["LAB_GUARD"] = "\n".join(line.replace("\n", " ") for line in lines)
    else:
        os.environ.pop("LAB_GUARD", None)


def take_violations() -> list[str]:
    found, _state.violations = _state.violations, []
    return found


def record_violation(message: str) -> None:
    _state.violations.append(message)


@contextlib.contextmanager
def banned(*targets: str, reason: str = "", topic: str = "this test"):
    """Ban `targets` inside a `with` block of a test (see the module docstring)."""
    previous = activate(targets, reason, topic)
    try:
        yield
    finally:
        restore(previous)


def install_from_env() -> None:
    """In a child process a banned test started (e.g. the Triton interpreter's), apply the same bans."""
    lines = os.environ.get("LAB_GUARD", "").split("\n")
    if len(lines) > 2:
        activate(lines[2:], reason=lines[1], topic=lines[0])


def check_child() -> None:
    """At the end of such a child: raise BannedError if its code hit a ban (even one it swallowed)."""
    scan_student_modules()
    found = take_violations()
    if found:
        raise BannedError(found[0])
