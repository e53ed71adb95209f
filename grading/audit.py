"""A static audit of submitted modules: code an instructor should look at, flagged, never scored.

The run-time guard (lab/guard.py) stops library shortcuts; code written to get around a grader looks
different: it reads frames or closures, reaches into sys.modules, patches the lab's timing, spawns
processes, imports the reference or the grader. `audit(path)` lists such places with their lines; the
grader prints them as warnings of a `--submission` run and stores them in its manifest. Lines the
pristine stub has too (its docstrings, the code the student was given) are not flagged.
"""
from __future__ import annotations

import ast
from pathlib import Path

SUSPECT_MODULES = {
    "ctypes": "loads native code", "gc": "walks the garbage collector's objects", "inspect": "introspects frames",
    "subprocess": "starts processes", "multiprocessing": "starts processes", "signal": "handles signals",
    "socket": "opens network connections", "builtins": "patches builtins", "importlib": "imports dynamically",
    "solutions": "imports the reference solutions", "grading": "imports the grader", "_pytest": "reaches into pytest",
    "pytest": "reaches into pytest", "lab.guard": "reaches into the anti-cheat guard",
    "lab.seal": "reaches into the timing seal", "lab.timing": "reaches into the speed-test timing",
    "lab.oracle": "imports the tests' oracle",
}
SUSPECT_BUILTINS = {
    "__import__": "imports dynamically", "exec": "runs generated code", "eval": "runs generated code",
    "compile": "compiles generated code", "__builtins__": "patches builtins", "globals": "reads module globals",
}
SUSPECT_ATTRIBUTES = {
    "_getframe": "reads the call stack", "f_back": "reads the call stack", "f_globals": "reads another frame's "
    "globals", "f_locals": "reads another frame's locals", "settrace": "installs a tracer",
    "setprofile": "installs a profiler", "__closure__": "reads closures", "cell_contents": "reads closures",
    "__wrapped__": "unwraps a wrapped function", "__code__": "swaps code objects", "__globals__": "reads a "
    "function's globals", "__builtins__": "patches builtins", "_exit": "exits the process",
    "modules": "reaches into sys.modules",
}
SUSPECT_STRINGS = ("solutions", "test_", "grading", "conftest", "PYTEST", "LAB_")


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _module_flag(name: str) -> str | None:
    for module, why in SUSPECT_MODULES.items():
        if name == module or name.startswith(module + "."):
            return f"imports {name}: {why}"
    return None


def audit_source(source: str) -> list[tuple[int, str]]:
    """(line, what) for each suspicious place of a module's source; a SyntaxError is one finding."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [(exc.lineno or 0, f"does not parse: {exc.msg}")]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [(line, f) for f in map(_module_flag, (a.name for a in node.names)) if f]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            flag = next(filter(None, map(_module_flag, names)), None)
            found += [(line, flag)] if flag else []
        elif isinstance(node, ast.Attribute) and node.attr in SUSPECT_ATTRIBUTES:
            if node.attr != "modules" or _dotted(node) == "sys.modules":
                found.append((line, f"uses {_dotted(node) or node.attr}: {SUSPECT_ATTRIBUTES[node.attr]}"))
        elif isinstance(node, ast.Name) and node.id in SUSPECT_BUILTINS:
            found.append((line, f"uses {node.id}: {SUSPECT_BUILTINS[node.id]}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            hit = next((s for s in SUSPECT_STRINGS if s in node.value), None)
            if hit and len(node.value) < 200:
                found.append((line, f"mentions {node.value!r} in a string"))
    return sorted(set(found))


def audit(path: Path, pristine: Path | None = None) -> list[tuple[int, str]]:
    """Findings of a submitted file; with `pristine` (its stub), lines the stub has too are not flagged."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace")
    found = audit_source(lines)
    if pristine is not None and Path(pristine).is_file():
        given = {line.strip() for line in Path(pristine).read_text(encoding="utf-8", errors="replace").splitlines()}
        text = lines.splitlines()
        found = [(n, what) for n, what in found if not (0 < n <= len(text) and text[n - 1].strip() in given)]
    return found


def audit_manifest(manifest: dict, root: Path) -> list[str]:
    """Add an `audit` list to each file of a submission manifest; returns the warning lines."""
    base, warnings = Path(manifest["base"]), []
    for entry in manifest["files"]:
        stub = Path(root) / "exercises" / entry["topic"] / entry["module"]
        entry["audit"] = [f"line {line}: {what}" for line, what in audit(base / entry["path"], stub)]
        warnings += [f"audit: {entry['topic']}/{entry['module']} {finding}" for finding in entry["audit"]]
    return warnings
