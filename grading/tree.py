"""Copying the lab's tree: what never travels (caches, virtualenvs, outputs) and what a copy leaves out.

Shared by the isolated grading of a submission (`grading.isolate`) and the student release
(`grading.tools.release`). Paths are POSIX, relative to the root.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

NEVER = (".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".benchmarks", ".ipynb_checkpoints",
         ".lab-cache", "grading-out", "*.egg-info", "*.pyc", ".whl", ".mypy_cache", ".ruff_cache")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _never(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in NEVER)


def _left_out(rel: str, leave_out: tuple[str, ...]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") or fnmatch.fnmatch(rel, p) for p in leave_out)


def lab_files(root: Path, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The lab's files under `root` (relative POSIX paths, sorted): git's view (tracked, plus untracked
    files it does not ignore) when `root` is a git checkout, else every file; minus NEVER and `leave_out`
    (paths, folders or glob patterns)."""
    root = Path(root)
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=root, capture_output=True, check=True, timeout=60).stdout
        files = [f for f in listed.decode().split("\0") if f and (root / f).is_file()]
    except (OSError, subprocess.SubprocessError):
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(f for f in set(files)
                  if not any(_never(part) for part in f.split("/")) and not _left_out(f, leave_out))


def copy_files(root: Path, dest: Path, files: list[str]) -> None:
    """Copy `files` (relative to `root`) to the same places under `dest`, keeping modes (scripts stay
    executable); links are copied as the files they point to."""
    for rel in files:
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(root) / rel, target)


def is_empty_or_absent(path: Path) -> bool:
    return not Path(path).exists() or (Path(path).is_dir() and not any(os.scandir(path)))
