"""The points table: how many points each test of each topic is worth, read from the topics' own files.

Each topic declares its tests' points in the `[points]` table of `exercises/infNN/topic.toml` (its hidden
tests' in `grading/hidden/infNN/topic.toml`; see grading/topics.py), one key per test (its base name: the
function name without parameters; `"TestClass.test_name"` for a method):

    [points]
    test_greedy_matches_reference = 2
    test_decode_speed = { points = 3, requires = ["test_greedy_matches_reference"] }

`load_points()` gathers them into one table {topic: {test: Entry}}. `load_points(path)` reads instead a
single table file with one section per topic (`[inf00]`, ...; its hidden part beside it in
hidden/points.toml): `python -m grading --points FILE` overrides the topics' points with one.

Whether a test is correctness or speed is not written here: it comes from its `speed` marker when it
runs. A speed test earns its points only when the correctness tests it `requires` pass (default: every
non-speed test in its test file). A parametrized test's points are shared among its cases.

Invariants of a loaded table: topics match `infNN`; points are numbers >= 0 (whole numbers in a
topic.toml); `requires` names tests of the same topic; no other keys. A violation raises `PointsError`
naming the place. `check_against_collection` is the lab self-test's view: every collected test is in the
table and every table entry is collected. Instructor-only hidden tests (grading/hidden/, left out of the
student release) have their points merged into the table when they are there.
"""
from __future__ import annotations

import math
import tempfile
import tomllib
from pathlib import Path

from grading import topics as topic_files
from grading.topics import Entry
from lab.paths import REPO_ROOT, TOPIC_NAME


class PointsError(ValueError):
    """The points table is malformed; the message says where and how to fix it."""


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


def load_topic_points(root: Path = REPO_ROOT, include_hidden: bool = True) -> Table:
    """The `[points]` of every exercises/infNN/topic.toml under `root`, with the hidden tests' from
    grading/hidden/infNN/topic.toml (unless `include_hidden` is False: what students see)."""
    table: Table = {}
    base = Path(root) / "exercises"
    try:
        for path in sorted(base.glob("inf*/topic.toml")) if base.is_dir() else ():
            topic = path.parent.name
            if not TOPIC_NAME.match(topic):
                continue
            table[topic] = dict(topic_files.load(path).points)
            hidden = topic_files.hidden_file(root, topic)
            if include_hidden and hidden.is_file():
                extra = topic_files.load(hidden, hidden=True).points
                twice = sorted(set(extra) & set(table[topic]))
                if twice:
                    raise PointsError(f"{hidden}: {', '.join(twice)} already in {path}; a test has its points once")
                table[topic].update(extra)
    except topic_files.TopicError as exc:
        raise PointsError(str(exc)) from None
    return table


def load_points(path: Path | None = None, include_hidden: bool = True, root: Path = REPO_ROOT) -> Table:
    """The points table: the topics' own (topic.toml under `root`) when `path` is None, else a single
    table file with the hidden tests' table beside it when there is one (unless `include_hidden` is
    False: what students see)."""
    if path is None:
        return load_topic_points(root, include_hidden)
    hidden = hidden_points_path(path)
    extra = _read_toml(hidden) if include_hidden and hidden.is_file() else None
    return parse_points(_read_toml(path), str(path), extra, str(hidden))


def diff_names(table: Table, collected: dict[str, list[str]]) -> list[str]:
    """Problems between the table and collection, for the topics in `collected` (empty: they agree).

    `collected` maps a topic to the base names its tests collect to (repeats are fine)."""
    problems = []
    for topic, names in sorted(collected.items()):
        wanted, found = set(table.get(topic, {})), set(names)
        problems += [f"{topic}: {name} is collected but not in the points table (add it to [points] in "
                     f"exercises/{topic}/topic.toml, or grading/hidden/{topic}/topic.toml for a hidden test)"
                     for name in sorted(found - wanted)]
        problems += [f"{topic}: {name} is in the points table but not collected (rename it to the test's "
                     "function name, without parameters, or remove it)"
                     for name in sorted(wanted - found)]
    return problems


def check_against_collection(root: Path | None = None, impl: str = "solutions",
                             topics: list[str] | None = None, points: Path | None = None,
                             timeout_s: float = 600.0, runs: list | None = None) -> list[str]:
    """Collect every topic (with `impl`) in its own process and compare with the table.

    Returns human-readable problems; also a topic that fails to collect, a test name used in two files
    of one topic (its points would be ambiguous), and a table section with no topic folder. `runs`
    (`grading.runner.TopicRun`s of a grading already done, e.g. read back with `runner.load_run`) are
    used instead of collecting again: a grading's collection record is the same collection."""
    from grading import runner
    root = Path(root) if root is not None else runner.GRADING_PARENT
    table = load_points(points, root=root)
    known = runner.discover_topics(root)
    problems = [f"{topic}: has points but exercises/{topic} has no tests"
                for topic in sorted(set(table) - set(known)) if topics is None or topic in topics]
    topics = known if topics is None else topics
    collected: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="lab-rubric-") as tmp:
        done = {run.topic: run for run in runs or ()}
        for topic in topics:
            run = done.get(topic) or runner.run_topic(root, topic, impl, runner.Limits(timeout_s, timeout_s),
                                                      Path(tmp), collect_only=True)
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
