"""What a module's source refers to, by dotted name: the run-time guard's check that the student's code does
not use a banned module, however it reaches it (an import, an attribute chain, a name in a string).

    mentions("import torch.nn.functional as F\nF.softmax(x)")   # {"torch.nn.functional": 1,
                                                                  #  "torch.nn.functional.softmax": 2, ...}
"""
from __future__ import annotations

import ast
import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")
_SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, _SCOPES) and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _aliases(tree: ast.AST, found: dict[str, int]) -> dict[str, str]:
    """Local name -> dotted name of every import (anywhere in the module); records the imports in `found`."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
                head = alias.name.split(".")[0]
                aliases[alias.asname or head] = alias.name if alias.asname else head
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.setdefault(node.module, node.lineno)
            for alias in node.names:
                found.setdefault(f"{node.module}.{alias.name}", node.lineno)
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def mentions(source: str) -> dict[str, int]:
    """Dotted names a module's source refers to, with their first line: imports, attribute chains with
    import aliases resolved (F.softmax -> torch.nn.functional.softmax), and name-like string constants
    (docstrings left out). Raises SyntaxError for source that does not parse."""
    tree = ast.parse(source)
    found: dict[str, int] = {}
    aliases, docstrings = _aliases(tree, found), _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                found.setdefault(".".join([aliases.get(inner.id, inner.id), *reversed(chain)]), node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and _IDENTIFIER.match(node.value):
            found.setdefault(node.value, node.lineno)
    return found
