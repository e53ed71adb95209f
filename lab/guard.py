"""Run-time bans on library shortcuts: a test forbids the student's code what the test itself may use.

    pytestmark = pytest.mark.bans("transformers", "lab.oracle", reason="transformers is the tests' oracle")
    @pytest.mark.bans(*guard.LIBRARY_ATTENTION, reason="the kernel may not reach library attention")
    with guard.banned("numpy.percentile", reason="write the interpolation yourself"): ...   # in a test

A target is a module ("bitsandbytes" and all under it) or a callable by dotted path
("torch.nn.functional.scaled_dot_product_attention", "lab.model.LlamaModel.__init__"). The student's code
is every file of the implementation root under test (exercises/, a submission, a planted version) but its
test files. While a test that bans a target runs:
- a banned callable raises BannedError when a student frame is on the stack, or when it runs in another
  thread with no test code on the stack; the test's own calls (its oracle) and pytest's go through;
- a banned module cannot be imported by the student's code (lab code it calls may import what it needs),
  the student's loaded modules may not mention it in their source, nor hold it, a banned callable or an
  alias of one in their globals;
- a violation the student's code catches and swallows still fails the test (lab/guard_plugin.py).
Wrappers are installed once per session for what the collected tests ban (so an alias taken at import is
the wrapper too) and cost a set lookup while inactive. This stops shortcuts, not code written to defeat
it (reading frames or closures); the grader's audit (grading/audit.py) flags such code.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import threading
import types
from pathlib import Path

from lab.impl import REPO_ROOT, root_folder
from lab.mentions import mentions

LIBRARY_ATTENTION = (
    "torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention.forward",
    "torch.nn.attention.flex_attention", "lab.model.sdpa_attention", "flash_attn", "xformers")
QUANTIZATION_LIBRARIES = ("bitsandbytes", "torchao", "auto_gptq", "gptqmodel", "awq", "optimum.quanto",
                          "hqq", "quanto")
TORCH_QUANTIZATION = (
    "torch.ao", "torch.quantization", "torch.nn.quantized", "torch.nn.quantizable", "torch.nn.intrinsic",
    "torch.nn.qat", "torch.quantize_per_tensor", "torch.quantize_per_tensor_dynamic", "torch.quantize_per_channel",
    "torch.fake_quantize_per_tensor_affine", "torch.fake_quantize_per_channel_affine")
# The shortcuts of the quantization topics: a library, or torch's own packed kernels, doing the student's work.
INT8_SHORTCUTS = (*QUANTIZATION_LIBRARIES, *TORCH_QUANTIZATION, "torch._weight_int8pack_mm")
INT4_SHORTCUTS = (*QUANTIZATION_LIBRARIES, *TORCH_QUANTIZATION, "torch._convert_weight_to_int4pack",
                  "torch._convert_weight_to_int4pack_for_cpu", "torch._weight_int4pack_mm",
                  "torch._weight_int4pack_mm_for_cpu", "torch._weight_int4pack_mm_with_scales_and_zeros")
LIBRARY_PERCENTILES = (
    "numpy.percentile", "numpy.quantile", "numpy.nanpercentile", "numpy.nanquantile", "torch.quantile",
    "torch.nanquantile", "torch.Tensor.quantile", "torch.Tensor.nanquantile", "statistics.quantiles", "pandas",
    "scipy")
STUDENT, TEST, OTHER = "student", "test", "other"


class BannedError(RuntimeError):
    """The student's code reached something the running test bans."""


_state = types.SimpleNamespace(calls=frozenset(), modules=(), reason="", topic="this test", violations=[])
_installed: dict[str, tuple[object, str, object, object]] = {}     # target -> (owner, attr, original, wrapper)
_target_of: dict[int, str] = {}                                     # id(original or wrapper) -> target
_kinds: dict[str, str] = {}
_mentions: dict[tuple[str, float], dict[str, int]] = {}
_originals = {"import": builtins.__import__, "import_module": importlib.import_module}


# ------------------------------------------------------------------------------------------ whose code
def code_kind(filename: str) -> str:
    """STUDENT for a file of the implementation under test (not its tests), TEST for the lab's tests and
    conftest files, OTHER for everything else (lab/, libraries). Cached per file name."""
    kind = _kinds.get(filename)
    if kind is None:
        path, name = Path(os.path.realpath(filename)), os.path.basename(filename)
        try:
            root = root_folder()
        except ValueError:          # LAB_IMPL names no folder: there is no student code to tell apart
            root = None
        is_test_file = name.startswith("test_") or name == "conftest.py"
        if root is not None and path.is_relative_to(root.resolve()) and not is_test_file:
            kind = STUDENT
        elif path.is_relative_to(REPO_ROOT) and (is_test_file or path.is_relative_to(REPO_ROOT / "tests")
                                                  or path.is_relative_to(REPO_ROOT / "grading" / "hidden")):
            kind = TEST
        else:
            kind = OTHER
        _kinds[filename] = kind
    return kind


def _where(frame) -> str:
    try:
        shown = Path(frame.f_code.co_filename).resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = Path(frame.f_code.co_filename)
    return f"{shown.as_posix()} line {frame.f_lineno}"


def _violation(text: str) -> BannedError:
    message = f"{_state.topic}: {text}" + (f"; {_state.reason}" if _state.reason else "")
    _state.violations.append(message)
    return BannedError(message)


# ----------------------------------------------------------------------------------- banned callables
def _check_call(target: str) -> None:
    __tracebackhide__ = True
    frame, tested = sys._getframe(2), False
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


def _resolve(target: str) -> tuple[object, str, object] | None:
    """(owner, attribute, object) of a dotted callable path, or None when it names no callable."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                owner = getattr(owner, name)
            obj = getattr(owner, parts[-1])
        except AttributeError:
            return None
        return (owner, parts[-1], obj) if callable(obj) and not isinstance(obj, types.ModuleType) else None
    return None


def is_module_target(target: str) -> bool:
    """A module (installed or not) rather than a callable: "transformers", "flash_attn", "lab.oracle"."""
    try:
        if importlib.util.find_spec(target) is not None:
            return True
    except (ImportError, ValueError, AttributeError):
        pass
    return _resolve(target) is None


def install(targets) -> None:
    """Put wrappers on the banned callables and the import hooks in place (idempotent)."""
    for target in targets:
        if target in _installed or is_module_target(target):
            continue
        owner, attr, original = _resolve(target)
        wrapper = _wrapper(target, original)
        setattr(owner, attr, wrapper)
        _installed[target] = (owner, attr, original, wrapper)
        _target_of[id(original)] = _target_of[id(wrapper)] = target
    if builtins.__import__ is _originals["import"]:
        builtins.__import__ = _guarded_import
        importlib.import_module = _guarded_import_module


def uninstall() -> None:
    """Restore every wrapped callable and the import functions."""
    for owner, attr, original, _ in _installed.values():
        setattr(owner, attr, original)
    _installed.clear()
    _target_of.clear()
    builtins.__import__ = _originals["import"]
    importlib.import_module = _originals["import_module"]


# ------------------------------------------------------------------------------------- banned modules
def _module_banned(name: str) -> str | None:
    return next((m for m in _state.modules if name == m or name.startswith(m + ".")), None)


def _check_import(names: list[str], frame) -> None:
    """Only the importing frame counts: lab code the student calls may import what it needs."""
    __tracebackhide__ = True
    if code_kind(frame.f_code.co_filename) != STUDENT:
        return
    for name in names:
        banned = _module_banned(name) or (name if name in _state.calls else None)
        if banned:
            raise _violation(f"your code may not import {banned} ({_where(frame)})")


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    __tracebackhide__ = True
    if level == 0 and (_state.modules or _state.calls):
        _check_import([name] + [f"{name}.{item}" for item in fromlist or () if item != "*"], sys._getframe(1))
    return _originals["import"](name, globals, locals, fromlist, level)


@functools.wraps(importlib.import_module)
def _guarded_import_module(name, package=None):
    __tracebackhide__ = True
    if _state.modules or _state.calls:
        _check_import([importlib.util.resolve_name(name, package) if name.startswith(".") else name],
                      sys._getframe(1))
    return _originals["import_module"](name, package)


def _source_mentions(path: str) -> dict[str, int]:
    try:
        key = (path, os.stat(path).st_mtime)
        if key not in _mentions:
            _mentions[key] = mentions(Path(path).read_text(encoding="utf-8", errors="replace"))
        return _mentions[key]
    except (OSError, SyntaxError, ValueError):
        return {}


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
    rel = Path(path).resolve()
    rel = rel.relative_to(REPO_ROOT).as_posix() if rel.is_relative_to(REPO_ROOT) else str(rel)
    for name, line in _source_mentions(path).items():
        banned = _module_banned(name)
        if banned:
            _violation(f"your code may not use {banned} ({rel} line {line} mentions {name})")
            return
    values = list(vars(module).items())
    for owner_name, value in list(values):
        if isinstance(value, type) and value.__module__ == module.__name__:
            values += [(f"{owner_name}.{k}", getattr(v, "__func__", v)) for k, v in vars(value).items()]
    for name, value in values:
        held = _held(value) if not name.startswith("__") else None
        if held:
            _violation(f"your code may not use {held} ({rel} holds it as {name})")
            return


def scan_student_modules() -> None:
    """Record a violation for each loaded student module of the running test's topic that mentions or
    holds a banned target (every student module when the topic is unknown). Modules of other topics are
    left to the run-time checks: in one pytest session over several topics, inf01's profiler may well
    mention the lab's cache that inf10 bans."""
    if not (_state.modules or _state.calls):
        return
    topic = _state.topic if _state.topic.startswith("inf") else None
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or code_kind(path) != STUDENT:
            continue
        if topic is None or Path(path).parent.name == topic:
            _scan_module(module, path)


# ------------------------------------------------------------------------------------------ activation
def activate(targets, reason: str = "", topic: str = "this test") -> tuple:
    """Ban `targets` from now on (after installing them); returns what to pass to `restore`."""
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
