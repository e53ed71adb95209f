"""The timing seal: what speed figures rest on may not change while a test runs.

`lab.timing` binds its clocks when it is imported (before any student module is), so patching
`time.perf_counter` or `torch.cuda.Event` cannot fool it; this seal also notices such patches, and any
change to `lab.timing` itself (a function, its code, a method of `Comparison`) or to the guard, and undoes them:

    seal = Seal()
    seal.record()            # after collection, and again at each test's setup for modules loaded since
    broken = seal.verify()   # after each test's teardown: what changed (restored already), [] if nothing

Besides functions, every module-level binding of `BOUND_MODULES` is held: the clock references
`lab.timing` keeps (`_perf_counter`, `_median`, `_cuda_synchronize`, `_CudaEvent`, `_event_record`, ...),
its constants, and the seal's own tables; a rebinding, a deletion, or an in-place change of a dict, list
or set bound there is reported and undone. The grader's plugin records the seal as soon as pytest is
configured, before any student module can be imported.

The lab's conftest fails the test during which a change was made (a teardown error naming it).
"""
from __future__ import annotations

import sys
import types
from typing import Any

WATCHED = {
    "time": ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "sleep"),
    "statistics": ("median",),
    "torch.cuda": ("synchronize", "Event"),
    "lab.hardware": ("synchronize",),
}
# every function and class of these, and their methods
WHOLE_MODULES = ("lab.timing", "lab.thresholds", "grading.guard.seal", "grading.guard.runtime", "grading.plugin")
BOUND_MODULES = ("lab.timing", "grading.guard.seal")       # every module-level binding, whatever it is
_CONTAINERS = (dict, list, set)
_FUNCTION_PARTS = ("__code__", "__defaults__", "__kwdefaults__")


class Seal:
    """Originals of the watched names, recorded the first time their module is seen loaded."""

    def __init__(self):
        self._seen: dict[tuple[object, str], object] = {}             # (owner, name) -> original
        self._parts: dict[int, tuple[types.FunctionType, tuple]] = {}  # id(function) -> (function, parts)
        self._names: dict[tuple[object, str], str] = {}
        self._contents: dict[int, tuple[Any, Any]] = {}                # id(container) -> (it, shallow copy)

    def _watch(self, owner, name: str, label: str) -> None:
        key = (owner, name)
        if key in self._seen or name not in vars(owner):
            return
        value = vars(owner)[name]
        self._seen[key], self._names[key] = value, label
        function = getattr(value, "fget", None) or getattr(value, "__func__", None) or value
        if isinstance(function, types.FunctionType):
            self._parts[id(function)] = (function, tuple(getattr(function, p) for p in _FUNCTION_PARTS))

    def record(self) -> None:
        """Note the originals of every watched name whose module is loaded now (idempotent)."""
        for module_name, names in WATCHED.items():
            module = sys.modules.get(module_name)
            for name in names if module is not None else ():
                self._watch(module, name, f"{module_name}.{name}")
        event = getattr(sys.modules.get("torch.cuda"), "Event", None)
        for name in ("record", "synchronize", "elapsed_time") if isinstance(event, type) else ():
            self._watch(event, name, f"torch.cuda.Event.{name}")
        for module_name in BOUND_MODULES:
            module = sys.modules.get(module_name)
            for name, value in list(vars(module).items()) if module is not None else ():
                if name in ("__builtins__", "__loader__", "__spec__", "__cached__"):
                    continue
                self._watch(module, name, f"{module_name}.{name}")
                if isinstance(value, _CONTAINERS) and id(value) not in self._contents:
                    self._contents[id(value)] = (value, value.copy())
        for module_name in WHOLE_MODULES:
            module = sys.modules.get(module_name)
            for name, value in list(vars(module).items()) if module is not None else ():
                if isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", "") == module_name:
                    self._watch(module, name, f"{module_name}.{name}")
                    for attr in list(vars(value)) if isinstance(value, type) else ():
                        if not attr.startswith("__") or attr in ("__init__", "__call__"):
                            self._watch(value, attr, f"{module_name}.{name}.{attr}")

    def verify(self) -> list[str]:
        """Names changed since they were recorded; each is put back before this returns."""
        changed = []
        for (owner, name), original in self._seen.items():
            if vars(owner).get(name, _MISSING) is not original:
                changed.append(f"{self._names[(owner, name)]} was replaced")
                setattr(owner, name, original)
        for function, parts in self._parts.values():
            now = tuple(getattr(function, p) for p in _FUNCTION_PARTS)
            if any(a is not b for a, b in zip(now, parts)):
                changed.append(f"the code of {function.__module__}.{function.__qualname__} was changed")
                for part, value in zip(_FUNCTION_PARTS, parts):
                    setattr(function, part, value)
        for container, copy in self._contents.values():
            if container != copy:
                label = next((self._names[key] for key, value in self._seen.items() if value is container),
                             "a table of lab.timing or the seal")
                changed.append(f"the contents of {label} were changed")
                container.clear()
                container.update(copy) if isinstance(container, (dict, set)) else container.extend(copy)
        return changed


_MISSING = object()
