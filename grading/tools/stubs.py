"""Stubs from solutions: one source for both, so twenty topics never drift.

A solution file marks each region a student writes:

    def greedy_generate(model, prompt_ids, max_new_tokens):
        \"\"\"docstring: shapes, semantics, one hint (kept in the stub)\"\"\"
        # BEGIN SOLUTION
        ...
        # END SOLUTION

In the stub a region inside a function becomes `raise NotStarted("inf00: implement greedy_generate")`
(`lab.errors.NotStarted`, a NotImplementedError that the tests and the grader recognize by its type; the
stub imports it after its last top-level import); a region outside any function (imports or helpers only
the solution needs) is dropped. Everything else is copied verbatim, so signatures, type hints and
docstrings are shared.

    python -m grading.tools.stubs --check    # exit 1 if a committed stub differs from its solution
    python -m grading.tools.stubs --write    # regenerate exercises/infNN/*.py from solutions/infNN/*.py
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

from lab.paths import REPO_ROOT

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
NOT_STARTED_IMPORT = "from lab.errors import NotStarted\n"
_DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")


class MarkerError(ValueError):
    pass


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _enclosing(lines: list[str], index: int, indent: int) -> tuple[str | None, bool]:
    """(qualified name, is_in_function) of the innermost def/class enclosing line `index` at `indent`."""
    chain, limit = [], indent                  # [(kind, name)], innermost first
    for line in reversed(lines[:index]):
        match = _DEF.match(line)
        if match and len(match.group(1)) < limit:
            chain.append((match.group(2), match.group(3)))
            limit = len(match.group(1))
            if limit == 0:
                break
    name = ".".join(name for _, name in reversed(chain)) or None
    return name, bool(chain) and chain[0][0] == "def"


def generate_stub(source: str, topic: str, filename: str = "<solution>") -> str:
    """The stub text of one solution module."""
    lines, out, i = source.splitlines(keepends=True), [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != BEGIN:
            if line.strip() == END:
                raise MarkerError(f"{filename}:{i + 1}: '{END}' without a '{BEGIN}'")
            out.append(line)
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() in (BEGIN, END)), None)
        if end is None or lines[end].strip() != END:
            raise MarkerError(f"{filename}:{i + 1}: '{BEGIN}' needs a matching '{END}' before the next BEGIN")
        indent = _indent(line)
        name, in_function = _enclosing(lines, i, indent)
        if in_function:
            out.append(f'{" " * indent}raise NotStarted("{topic}: implement {name}")\n')
        i = end + 1
    return _import_not_started("".join(out), filename)


def _import_not_started(stub: str, filename: str) -> str:
    """The stub with `from lab.errors import NotStarted` after its last absolute top-level import (or its
    docstring), when it raises NotStarted."""
    if "raise NotStarted(" not in stub or NOT_STARTED_IMPORT in stub:
        return stub
    try:
        tree = ast.parse(stub)
    except SyntaxError as error:
        raise MarkerError(f"{filename}: the generated stub is not valid Python ({error})") from None
    imports = [node for node in tree.body if isinstance(node, ast.Import) or
               isinstance(node, ast.ImportFrom) and not node.level]       # after the absolute imports
    docstring = tree.body[:1] if tree.body and isinstance(tree.body[0], ast.Expr) \
        and isinstance(tree.body[0].value, ast.Constant) and isinstance(tree.body[0].value.value, str) else []
    after = (imports or docstring)
    line = after[-1].end_lineno if after else 0
    lines = stub.splitlines(keepends=True)
    last = imports[-1] if imports else None
    first_party = isinstance(last, ast.ImportFrom) and (last.module or "").split(".")[0] == "lab" or \
        isinstance(last, ast.Import) and last.names[0].name.split(".")[0] == "lab"
    block = [NOT_STARTED_IMPORT] if first_party else ["\n", NOT_STARTED_IMPORT] if after else [NOT_STARTED_IMPORT, "\n"]
    return "".join(lines[:line] + block + lines[line:])


def expected_stubs(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every exercises/ module as generated from solutions/ (topic __init__ files included)."""
    result = {}
    for solution in sorted((root / "solutions").glob("inf*/*.py")):
        if solution.name == "notebook.py":          # a notebook's source is never a student module
            continue
        topic = solution.parent.name
        target = root / "exercises" / topic / solution.name
        text = solution.read_text()
        result[target] = generate_stub(text, topic, str(solution.relative_to(root)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.tools.stubs", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report stubs that differ from their solutions")
    mode.add_argument("--write", action="store_true", help="regenerate the stubs in exercises/")
    args = parser.parse_args(argv)
    try:
        stubs = expected_stubs()
    except MarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stale = [path for path, text in stubs.items() if not path.exists() or path.read_text() != text]
    if args.write:
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(stubs[path])
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        return 0
    for path in stale:
        print(f"stale: {path.relative_to(REPO_ROOT)} (run: make stubs)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
