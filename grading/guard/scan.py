"""The one syntax-tree scanner of the anti-cheat package: what a module's source names, and what in it an
instructor should look at. Reading source never runs it, so this is the check that cannot be fooled at
run time and cannot re-enter an import; it is the primary check of the bans.

    found = scan_source(source)
    found.names       # {"torch.nn.functional.softmax": 2, ...}: dotted names the source refers to, first line
    found.findings    # [(5, "uses sys._getframe: reads the call stack"), ...]: the audit's flags

- `names`: imports, attribute chains with import aliases resolved (F.softmax -> torch.nn.functional.softmax),
  name-like string constants (docstrings left out);
- `banned_mentions(path, targets)`: (line, name, target) of each name of a file that is a banned target or
  lies under one (a module "transformers" covers "transformers.DynamicCache"); the bans' static check;
- `audit(path, pristine)` / `audit_manifest`: the grader's audit of a submission: code that reads frames
  or closures, reaches into sys.modules, patches the lab's timing, spawns processes, imports the reference
  or the grader; flagged as warnings, never scored. Lines the pristine stub has too are not flagged.
"""
from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SUSPECT_MODULES = {
    "ctypes": "loads native code", "gc": "walks the garbage collector's objects", "inspect": "introspects frames",
    "subprocess": "starts processes", "multiprocessing": "starts processes", "signal": "handles signals",
    "socket": "opens network connections", "builtins": "patches builtins", "importlib": "imports dynamically",
    "solutions": "imports the reference solutions", "grading": "imports the grader", "_pytest": "reaches into pytest",
    "pytest": "reaches into pytest", "lab.timing": "reaches into the speed-test timing",
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
    "modules": "reaches into sys.modules", "meta_path": "changes how modules are found",
}
SUSPECT_STRINGS = ("solutions", "test_", "grading", "conftest", "PYTEST", "LAB_")
NOT_STUDENT_FILES = ("conftest.py", "notebook.py")     # besides test_*.py: never a student module
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")
_SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class Scan:
    """What one module's source names (`names`: dotted name -> first line) and the audit's `findings`."""

    names: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[int, str]] = field(default_factory=list)


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
    if name.startswith("grading") or name.startswith("lab.guard") or name.startswith("lab.seal"):
        return f"imports {name}: reaches into the grader's anti-cheat checks"
    return None


def scan_source(source: str) -> Scan:
    """One walk over the tree of `source`. Raises SyntaxError for source that does not parse."""
    tree = ast.parse(source)
    found = Scan()
    names, aliases = found.names, {}
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, _SCOPES) and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):                      # the import aliases first: they hold for the whole module
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.setdefault(alias.name, node.lineno)
                head = alias.name.split(".")[0]
                aliases[alias.asname or head] = alias.name if alias.asname else head
            found.findings += [(node.lineno, f) for f in map(_module_flag, (a.name for a in node.names)) if f]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.setdefault(node.module, node.lineno)
            for alias in node.names:
                names.setdefault(f"{node.module}.{alias.name}", node.lineno)
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            flag = next(filter(None, map(_module_flag, [node.module] + [f"{node.module}.{a.name}"
                                                                        for a in node.names])), None)
            found.findings += [(node.lineno, flag)] if flag else []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                names.setdefault(".".join([aliases.get(inner.id, inner.id), *reversed(chain)]), line)
            if node.attr in SUSPECT_ATTRIBUTES and (node.attr != "modules" or _dotted(node) == "sys.modules"):
                found.findings.append((line, f"uses {_dotted(node) or node.attr}: {SUSPECT_ATTRIBUTES[node.attr]}"))
        elif isinstance(node, ast.Name) and node.id in SUSPECT_BUILTINS:
            found.findings.append((line, f"uses {node.id}: {SUSPECT_BUILTINS[node.id]}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if _IDENTIFIER.match(node.value):
                names.setdefault(node.value, line)
            hit = next((s for s in SUSPECT_STRINGS if s in node.value), None)
            if hit and len(node.value) < 200:
                found.findings.append((line, f"mentions {node.value!r} in a string"))
    found.findings = sorted(set(found.findings))
    return found


def mentions(source: str) -> dict[str, int]:
    """Dotted names a module's source refers to, with their first line (see `scan_source`)."""
    return scan_source(source).names


def covers(target: str, name: str) -> bool:
    """Whether a mentioned dotted `name` is the banned `target` or lies under it."""
    return name == target or name.startswith(target + ".")


_scans: dict[tuple[str, float, int], Scan | SyntaxError] = {}


def scan_file(path: str | Path) -> Scan | None:
    """The scan of a file, cached by (path, mtime, size); None when it cannot be read or parsed (a syntax
    error is the test's own failure, reported where the module is imported)."""
    path = str(path)
    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime, stat.st_size)
        if key not in _scans:
            try:
                _scans[key] = scan_source(Path(path).read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError) as exc:
                _scans[key] = SyntaxError(str(exc))
        found = _scans[key]
    except OSError:
        return None
    return None if isinstance(found, SyntaxError) else found


def banned_mentions(path: str | Path, targets) -> list[tuple[int, str, str]]:
    """(line, name, target) for each name in the file at `path` that a banned target covers, by line."""
    found = scan_file(path)
    if found is None:
        return []
    hits = [(line, name, target) for name, line in found.names.items() for target in targets if covers(target, name)]
    return sorted(set(hits))


def student_files(folder: str | Path) -> list[Path]:
    """The student's modules of one topic folder (of exercises/, solutions/, a submission or a planted
    copy): every .py file under it but tests, conftest.py and the notebook's source."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts
                  and not p.name.startswith("test_") and p.name not in NOT_STUDENT_FILES)


# ------------------------------------------------------------------------------------------- the audit
def audit_source(source: str) -> list[tuple[int, str]]:
    """(line, what) for each suspicious place of a module's source; a SyntaxError is one finding."""
    try:
        return scan_source(source).findings
    except SyntaxError as exc:
        return [(exc.lineno or 0, f"does not parse: {exc.msg}")]


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
