"""The impl switch: which implementation the tests reach, the student's or the reference.

Tests never import `exercises` or `solutions` directly; they ask for a topic's modules here:

    impl = Topic("inf10")
    impl.kv_cache.KVCache(...)        # exercises.inf10.kv_cache or solutions.inf10.kv_cache

The root comes from `LAB_IMPL` (set by `pytest --impl`): `exercises` (default), `solutions`, or the path
of a folder laid out like them (`<folder>/inf10/kv_cache.py`), which is how the planted wrong solutions
(materialized from tests/planted/ by grading.planted) and the grader's isolated submissions are run.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

from lab.paths import REPO_ROOT

BUILTIN_ROOTS = ("exercises", "solutions")
NO_REFERENCE = ("the reference solutions are not included in this release (there is no solutions/ folder): "
                "--impl solutions / LAB_IMPL=solutions is for instructors; run your own code without it")


def impl_root() -> str:
    """The selected implementation: 'exercises', 'solutions' or an absolute folder path."""
    root = os.environ.get("LAB_IMPL", "exercises")
    if root == "solutions" and not (REPO_ROOT / "solutions").is_dir():
        raise ValueError(NO_REFERENCE)
    if root in BUILTIN_ROOTS:
        return root
    path = Path(root).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_dir():
        raise ValueError(f"--impl / LAB_IMPL must be 'exercises', 'solutions' or an existing folder; "
                         f"{root!r} is none of these")
    return str(path.resolve())


def root_folder(root: str | None = None) -> Path:
    """The folder of an implementation root (`impl_root()` by default): exercises/, solutions/ or the path."""
    root = impl_root() if root is None else root
    return REPO_ROOT / root if root in BUILTIN_ROOTS else Path(root).resolve()


def solutions_allowed(root: str | None = None) -> bool:
    """Whether code graded under `root` may import `solutions`: only the reference itself (a planted
    version is a whole copy of the reference with its diff applied, and imports nothing of it)."""
    return (impl_root() if root is None else root) == "solutions"


def _package_for(root: str) -> str:
    """The importable package name of a root, registering a folder root under a private name."""
    if root in BUILTIN_ROOTS:
        # `exercises` and `solutions` are folders of the repository, not installed packages: a notebook's
        # kernel (started in exercises/infNN/) or a script run from elsewhere finds them through the root.
        if str(REPO_ROOT) not in sys.path:
            sys.path.append(str(REPO_ROOT))
        return root
    name = "_lab_impl_" + "".join(c if c.isalnum() else "_" for c in root)[-60:]
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [root]          # a namespace-like package: submodules load from the folder
        sys.modules[name] = package
    return name


def load(module: str) -> types.ModuleType:
    """Import `<root>.<module>`, e.g. load("inf10.kv_cache")."""
    return importlib.import_module(f"{_package_for(impl_root())}.{module}")


class Topic:
    """Lazy access to one topic's modules: `Topic("inf00").generate` imports inf00/generate.py on first use.

    Importing lazily keeps a student's syntax error inside the tests that need the module, where it is
    reported as that test's failure, instead of breaking the collection of the whole topic.
    """

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, module: str) -> types.ModuleType:
        if module.startswith("_"):
            raise AttributeError(module)
        return load(f"{self._name}.{module}")


class _SolutionsBlocker:
    """A meta-path finder that refuses `import solutions...` while the student's code is graded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "solutions" or fullname.startswith("solutions."):
            raise ImportError(f"importing {fullname!r} is not allowed while grading a student's code: "
                              "the reference solutions are not part of a submission")
        return None


def block_solutions() -> None:
    """Make `import solutions` fail in this process (idempotent)."""
    if not any(isinstance(f, _SolutionsBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, _SolutionsBlocker())
