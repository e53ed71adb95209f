"""Notebooks from plain sources: exercises/infNN/notebook.py (percent format) -> exercises/infNN/infNN.ipynb.

A source is Python with cell markers: `# %%` starts a code cell, `# %% [markdown]` a markdown cell whose
lines are comments (`# ` stripped). Keeping sources as .py makes them diffable and testable; the
committed .ipynb files are built from them with nbformat, and a lab self-test checks they match. The
source lives beside its notebook; it is never a student module (no stub, not scanned, not submitted).

    python -m grading.tools.notebooks --write          # rebuild every notebook
    python -m grading.tools.notebooks --check          # exit 1 if a committed notebook is stale
    python -m grading.tools.notebooks --run inf00      # execute one (LAB_IMPL decides whose code runs)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from lab.paths import REPO_ROOT, TOPIC_NAME

SOURCE_NAME = "notebook.py"


def _cells(source: str) -> list[tuple[str, str]]:
    cells: list[tuple[str, list[str]]] = []
    kind: str | None = None
    lines: list[str] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, lines))
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line[2:] if kind == "markdown" and line.startswith("# ") else
                         ("" if kind == "markdown" and line == "#" else line))
    if kind is not None:
        cells.append((kind, lines))
    return [(k, "\n".join(ls).strip("\n")) for k, ls in cells]


def build(source_path: Path) -> nbformat.NotebookNode:
    """The notebook of one percent-format source (exercises/infNN/notebook.py)."""
    topic = source_path.parent.name if source_path.name == SOURCE_NAME else source_path.stem
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(_cells(source_path.read_text())):
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        cell["id"] = f"{topic}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def target_of(source_path: Path) -> Path:
    """exercises/infNN/infNN.ipynb for exercises/infNN/notebook.py."""
    return source_path.parent / f"{source_path.parent.name}.ipynb"


def sources(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(p for p in (Path(root) / "exercises").glob(f"inf*/{SOURCE_NAME}") if TOPIC_NAME.match(p.parent.name))


def expected_notebooks(root: Path = REPO_ROOT) -> dict[Path, str]:
    return {target_of(p): nbformat.writes(build(p)) + "\n" for p in sources(root)}


def run(topic: str, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute a topic's notebook in its folder and return it with outputs (raises on a failing cell)."""
    from nbclient import NotebookClient
    path = REPO_ROOT / "exercises" / topic / f"{topic}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.tools.notebooks", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--run", metavar="TOPIC")
    args = parser.parse_args(argv)
    if args.run:
        run(args.run)
        print(f"{args.run}: every cell ran")
        return 0
    stale = {p: text for p, text in expected_notebooks().items() if not p.exists() or p.read_text() != text}
    for path, text in stale.items():
        if args.write:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        else:
            print(f"stale: {path.relative_to(REPO_ROOT)} (run: python -m grading.tools.notebooks --write)")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
