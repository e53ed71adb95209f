"""The points table (`grading/points.toml`): how many points each test of each topic is worth.

One TOML section per topic, one key per test (its base name: the function name without parameters;
`"TestClass.test_name"` for a method):

    [inf00]
    test_greedy_matches_reference = 2
    test_decode_speed = { points = 3, requires = ["test_greedy_matches_reference"] }

Whether a test is correctness or speed is not written here: it comes from its `speed` marker when it
runs. A speed test earns its points only when the correctness tests it `requires` pass (default: every
non-speed test in its test file). A parametrized test's points are shared among its cases.

Invariants of a loaded table: section names match `infNN`; points are finite numbers >= 0; `requires`
names tests of the same section; no other keys. A violation raises `PointsError` naming the place.
`check_against_collection` is the lab self-test's view: every collected test is in the table and every
table entry is collected. Instructor-only hidden tests (grading/hidden/, left out of the student release)
have their points in grading/hidden/points.toml, merged into the table when it is there.
"""
from __future__ import annotations

import math
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POINTS = Path(__file__).resolve().parent / "points.toml"


class PointsError(ValueError):
    """The points table is malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class Entry:
    """One test's worth. `requires` None means the default (non-speed tests in the same file)."""

    points: float
    requires: tuple[str, ...] | None = None


Table = dict[str, dict[str, Entry]]


def _entry(topic: str, name: str, value) -> Entry:
    where = f"[{topic}] {name}"
    if isinstance(value, dict):
        unknown = set(value) - {"points", "requires"}
        if unknown or "points" not in value:
            raise PointsError(f"{where}: use {{ points = N, requires = [...] }}; got keys {sorted(value)}")
        requires = value.get("requires")
        if requires is not None and (not isinstance(requires, list)
                                     or not all(isinstance(r, str) for r in requires)):
            raise PointsError(f"{where}: requires must be a list of test names, got {requires!r}")
        entry = Entry(_points(where, value["points"]), tuple(requires) if requires is not None else None)
    else:
        entry = Entry(_points(where, value))
    return entry


def _points(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise PointsError(f"{where}: points must be a number >= 0, got {value!r}")
    return float(value)


def parse_points(data: dict, source: str = "points table", extra: dict | None = None,
                 extra_source: str = "hidden points") -> Table:
    """Validate a parsed TOML document (and `extra`, the hidden tests' table, merged into it) and turn it
    into {topic: {test name: Entry}}."""
    from grading.runner import TOPIC_NAME   # local: runner imports nothing from here, keep it that way
    table: Table = {}
    for where, document in ((source, data), (extra_source, extra or {})):
        for topic, section in document.items():
            if not TOPIC_NAME.match(topic) or not isinstance(section, dict):
                raise PointsError(f"{where}: [{topic}] is not a topic section like [inf00]")
            twice = sorted(set(section) & set(table.get(topic, {})))
            if twice:
                raise PointsError(f"{where}: [{topic}] {', '.join(twice)} already in {source}")
            table.setdefault(topic, {}).update({name: _entry(topic, name, value) for name, value in section.items()})
    for topic, entries in table.items():
        for name, entry in entries.items():
            unknown = [r for r in entry.requires or () if r not in entries]
            if unknown:
                raise PointsError(f"{source}: [{topic}] {name} requires {unknown}, not in [{topic}]")
    return table


def hidden_points_path(path: Path) -> Path:
    """The hidden tests' points, beside the table: grading/hidden/points.toml for grading/points.toml."""
    return Path(path).parent / "hidden" / "points.toml"


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PointsError(f"cannot read the points table {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PointsError(f"{path} is not valid TOML: {exc}") from exc


def load_points(path: Path = DEFAULT_POINTS, include_hidden: bool = True) -> Table:
    """Read and validate a points table file, with the hidden tests' table beside it when there is one
    (unless `include_hidden` is False: what students see)."""
    hidden = hidden_points_path(path)
    extra = _read_toml(hidden) if include_hidden and hidden.is_file() else None
    return parse_points(_read_toml(path), str(path), extra, str(hidden))


def diff_names(table: Table, collected: dict[str, list[str]]) -> list[str]:
    """Problems between the table and collection, for the topics in `collected` (empty: they agree).

    `collected` maps a topic to the base names its tests collect to (repeats are fine)."""
    problems = []
    for topic, names in sorted(collected.items()):
        wanted, found = set(table.get(topic, {})), set(names)
        problems += [f"{topic}: {name} is collected but not in the points table"
                     for name in sorted(found - wanted)]
        problems += [f"{topic}: {name} is in the points table but not collected"
                     for name in sorted(wanted - found)]
    return problems


def check_against_collection(root: Path | None = None, impl: str = "solutions",
                             topics: list[str] | None = None, points: Path = DEFAULT_POINTS,
                             timeout_s: float = 600.0) -> list[str]:
    """Collect every topic (with `impl`) in its own process and compare with the table.

    Returns human-readable problems; also a topic that fails to collect, a test name used in two files
    of one topic (its points would be ambiguous), and a table section with no topic folder."""
    from grading import runner
    root = Path(root) if root is not None else runner.GRADING_PARENT
    table = load_points(points)
    known = runner.discover_topics(root)
    problems = [f"{topic}: in the points table but exercises/{topic} has no tests"
                for topic in sorted(set(table) - set(known)) if topics is None or topic in topics]
    topics = known if topics is None else topics
    collected: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="lab-rubric-") as tmp:
        for topic in topics:
            run = runner.run_topic(root, topic, impl, runner.Limits(timeout_s, timeout_s), Path(tmp),
                                   collect_only=True)
            problems += [f"{topic}: collection error: {e['message']}" for e in run.collect_errors]
            if not run.items and not run.collect_errors:
                problems.append(f"{topic}: nothing collected (pytest exit code {run.exit_code})")
            files: dict[str, set[str]] = {}
            for item in run.items:
                files.setdefault(item["name"], set()).add(item["file"])
            problems += [f"{topic}: {name} is defined in several files {sorted(f)}; give it one name"
                         for name, f in sorted(files.items()) if len(f) > 1]
            collected[topic] = list(files)
    return problems + diff_names(table, collected)
