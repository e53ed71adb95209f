"""A topic's metadata, bans and points, declared once: `exercises/infNN/topic.toml` (hidden tests' points
in `grading/hidden/infNN/topic.toml`).

    title = "FlashAttention"
    minutes = 45

    [[bans]]                       # applies to every test of the topic, public and hidden ...
    targets = ["@library-attention", "lab.model.sdpa_attention"]
    reason = "write the attention yourself: torch SDPA is the tests' peer"
    tests = ["test_flash_*"]       # ... or (optional) only to tests whose base name matches these patterns

    [points]                       # every public test's points; base test names (no parameters)
    test_online_softmax_matches_float64 = 3
    test_flash_kernel_beats_naive_at_4k = { points = 3, requires = ["test_flash_kernel_matches_float64"] }

Targets are modules or dotted callables; "@name" names a shared list (grading/guard/bans.py: NAMED). A speed
test earns its points only when the tests in `requires` pass (default: every non-speed test of its file);
a parametrized test's points are shared by its cases. The hidden file holds `[points]` only: hidden tests
get the public topic's bans.

`load(path)` validates as it reads and raises TopicError with what to fix: an unknown key, points that
are not an int >= 0, a `requires` naming a test not in [points], a ban without targets or reason, an
unknown "@name"; `check_targets(topic)` (the pytest plugin, at collection) also refuses a target that
names nothing (a typo under an installed package). A test in [points] that is not collected, or a
collected test missing there, is `grading.rubric.check_against_collection`'s.
"""
from __future__ import annotations

import fnmatch
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lab.paths import REPO_ROOT, TOPIC_FILE, TOPIC_NAME

TOP_KEYS = {"title": str, "minutes": int, "bans": list, "points": dict}
HIDDEN_KEYS = {"points": dict}
BAN_KEYS = {"targets", "reason", "tests"}
EXAMPLE_BAN = '[[bans]]\ntargets = ["transformers"]\nreason = "transformers is the tests\' oracle"'


class TopicError(ValueError):
    """A topic.toml is malformed; the message says which file, where, and how to fix it."""


@dataclass(frozen=True)
class Entry:
    """One test's worth. `requires` None means the default (non-speed tests in the same file)."""

    points: float
    requires: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Ban:
    """Targets banned from the student's code (shared "@name" lists expanded), for the tests that match."""

    targets: tuple[str, ...]
    reason: str
    tests: tuple[str, ...] | None = None           # fnmatch patterns of base test names; None: every test
    declared: tuple[str, ...] = ()                 # as written (with "@name")

    def applies_to(self, test_name: str) -> bool:
        return self.tests is None or any(fnmatch.fnmatchcase(test_name, p) for p in self.tests)


@dataclass(frozen=True)
class TopicFile:
    name: str
    path: Path
    title: str = ""
    minutes: int = 0
    bans: tuple[Ban, ...] = ()
    points: dict[str, Entry] = field(default_factory=dict)

    def bans_for(self, test_name: str) -> tuple[list[str], str]:
        """(targets, reasons joined) of the bans that apply to a test (base name)."""
        bans = [b for b in self.bans if b.applies_to(test_name)]
        targets = list(dict.fromkeys(t for b in bans for t in b.targets))
        return targets, "; ".join(dict.fromkeys(b.reason for b in bans if b.reason))


def _entry(where: str, name: str, value) -> Entry:
    where = f"{where} [points] {name}"
    if isinstance(value, dict):
        unknown = set(value) - {"points", "requires"}
        if unknown or "points" not in value:
            raise TopicError(f"{where}: use {{ points = N, requires = [\"test_...\"] }}; got keys {sorted(value)}")
        requires = value.get("requires")
        if requires is not None and (not isinstance(requires, list) or not all(isinstance(r, str) for r in requires)):
            raise TopicError(f"{where}: requires must be a list of test names, got {requires!r}")
        return Entry(_points(where, value["points"]), tuple(requires) if requires is not None else None)
    return Entry(_points(where, value))


def _points(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TopicError(f"{where}: points must be a whole number >= 0 (e.g. 2), got {value!r}")
    return float(value)


def _ban(where: str, index: int, value) -> Ban:
    from grading.guard.bans import expand
    where = f"{where} [[bans]] #{index + 1}"
    if not isinstance(value, dict):
        raise TopicError(f"{where}: each ban is a table, e.g.\n{EXAMPLE_BAN}")
    unknown = sorted(set(value) - BAN_KEYS)
    if unknown:
        raise TopicError(f"{where}: unknown key(s) {unknown}; a ban has targets, reason and optionally tests")
    targets, reason, tests = value.get("targets"), value.get("reason"), value.get("tests")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t.strip() for t in targets):
        raise TopicError(f"{where}: targets must be a non-empty list of dotted names or \"@name\" lists, "
                         f"got {targets!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise TopicError(f"{where}: give a reason (what the student writes instead, and why the target "
                         "is not theirs): reason = \"...\"")
    if tests is not None and (not isinstance(tests, list) or not tests
                              or not all(isinstance(t, str) and t for t in tests)):
        raise TopicError(f"{where}: tests must be a non-empty list of test name patterns like "
                         f"[\"test_flash_*\"], or left out for every test; got {tests!r}")
    try:
        expanded = expand(targets)
    except ValueError as exc:
        raise TopicError(f"{where}: {exc}") from None
    return Ban(tuple(expanded), reason.strip(), tuple(tests) if tests is not None else None, tuple(targets))


def parse(data: dict, path: Path, name: str, hidden: bool = False) -> TopicFile:
    """Validate a parsed topic.toml document (`hidden`: a grading/hidden one, [points] only)."""
    where = str(path)
    allowed = HIDDEN_KEYS if hidden else TOP_KEYS
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        hint = " (a hidden topic.toml holds [points] only: hidden tests get the public topic's bans)" if hidden else ""
        raise TopicError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}{hint}")
    for key, kind in allowed.items():
        if key in data and not isinstance(data[key], kind) or (kind is int and isinstance(data.get(key), bool)):
            raise TopicError(f"{where}: {key} must be a {kind.__name__}, got {data[key]!r}")
    if not hidden:
        missing = [k for k in ("title", "minutes") if k not in data]
        if missing:
            raise TopicError(f"{where}: add {' and '.join(missing)} (e.g. title = \"KV cache\", minutes = 45)")
    points = {test: _entry(where, test, value) for test, value in data.get("points", {}).items()}
    for test, entry in points.items():
        unknown = [r for r in entry.requires or () if r not in points]
        if unknown:
            raise TopicError(f"{where} [points] {test}: requires {unknown}, which are not in [points]; "
                             "name tests of this topic's file")
    bans = tuple(_ban(where, i, b) for i, b in enumerate(data.get("bans", [])))
    return TopicFile(name, Path(path), data.get("title", ""), data.get("minutes", 0), bans, points)


def load(path: Path, hidden: bool = False) -> TopicFile:
    """Read and validate one topic.toml; its topic is the name of its folder."""
    path = Path(path)
    name = path.parent.name
    if not TOPIC_NAME.match(name):
        raise TopicError(f"{path}: a topic.toml lives in a topic folder named like inf10, not {name!r}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TopicError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopicError(f"{path} is not valid TOML: {exc}") from exc
    return parse(data, path, name, hidden)


def public_file(root: Path, topic: str) -> Path:
    return Path(root) / "exercises" / topic / TOPIC_FILE


def hidden_file(root: Path, topic: str) -> Path:
    return Path(root) / "grading" / "hidden" / topic / TOPIC_FILE


@functools.lru_cache(maxsize=None)
def _cached(path: Path, hidden: bool, mtime: float) -> TopicFile:
    return load(path, hidden)


def topic(root: Path, name: str) -> TopicFile | None:
    """The public topic.toml of `name` under `root` (None when there is none)."""
    path = public_file(root, name)
    return _cached(path, False, path.stat().st_mtime) if path.is_file() else None


def hidden_topic(root: Path, name: str) -> TopicFile | None:
    path = hidden_file(root, name)
    return _cached(path, True, path.stat().st_mtime) if path.is_file() else None


def topic_file_of(test_path: Path) -> Path | None:
    """The topic.toml whose bans a test file gets: its folder's, or for a hidden test
    (ROOT/grading/hidden/infNN/) the public topic's (ROOT/exercises/infNN/topic.toml)."""
    folder = Path(test_path).parent
    if not TOPIC_NAME.match(folder.name):
        return None
    if folder.parent.name == "hidden" and folder.parent.parent.name == "grading":
        return public_file(folder.parent.parent.parent, folder.name)
    return folder / TOPIC_FILE


def for_test(test_path: Path) -> TopicFile | None:
    path = topic_file_of(test_path)
    return _cached(path, False, path.stat().st_mtime) if path is not None and path.is_file() else None


def check_targets(found: TopicFile) -> None:
    """Raise TopicError for a ban target that names nothing (imports the targets' packages: at collection)."""
    from grading.guard.bans import names_nothing
    for i, ban in enumerate(found.bans):
        bad = [t for t in ban.targets if names_nothing(t)]
        if bad:
            raise TopicError(f"{found.path} [[bans]] #{i + 1}: {bad} name(s) nothing importable (a module or a "
                             "callable by dotted path, e.g. \"torch.nn.functional.scaled_dot_product_attention\"); "
                             "fix the spelling or remove them")


def all_topics(root: Path = REPO_ROOT) -> dict[str, TopicFile]:
    """Every exercises/infNN/topic.toml under `root`, by topic."""
    base = Path(root) / "exercises"
    return {p.parent.name: found for p in sorted(base.glob(f"inf*/{TOPIC_FILE}"))
            if TOPIC_NAME.match(p.parent.name) and (found := topic(root, p.parent.name)) is not None}
