"""Scoring: turn what each topic's process recorded (`runner.TopicRun`) and the points table into points.

Invariants:
- the table decides what is possible: a test in the table that did not run (collection error, crash,
  time-out, missing) still counts in `possible`, with 0 earned; a test that ran but is not in the table
  is shown with 0 points and a warning, never an exception;
- a parametrized test's points are shared equally among its cases; a case that this hardware cannot run
  ("not graded on this hardware") counts in `possible` but not in `possible_here`, and is never a pass or
  a zero: `earned <= possible_here <= possible` for every test, topic and total;
- a speed test earns points only when every test it requires passes all its gradable cases (a required
  test that this hardware cannot run does not block; where it runs, it gates);
- a speed test's tier (lab/thresholds.py: below threshold, pass, or a bonus tier against the reference's
  calibrated ratio on the card) is shown, never scored: it changes no tally. A test's tier is its worst
  case's; "withheld" while its points are gated; none when it failed for another reason than its ratio.
"""
from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

from grading.rubric import Entry
from grading.runner import TopicRun
from lab.thresholds import BELOW, TIERS, row_tier, speed_line

CORRECTNESS, SPEED = "correctness", "speed"
PASSED, FAILED, ERROR, NOT_STARTED = "passed", "failed", "error", "not started"
SKIPPED, NOT_HERE, TIMED_OUT, CRASHED = "skipped", "not graded on this hardware", "timed out", "crashed"
NOT_RUN, MISSING, PARTIAL, GATED = "not run", "missing", "partial", "gated"
COMPLETE = "complete"
VOID = "void"                      # the topic's results cannot be trusted (grading.runner.check_records)
WITHHELD = "withheld"              # a speed test's tier while its points are gated


@dataclass
class Tally:
    """Points `earned`, `possible_here` (on this hardware) and `possible` (anywhere)."""

    earned: float = 0.0
    possible_here: float = 0.0
    possible: float = 0.0

    def add(self, other: Tally) -> None:
        self.earned += other.earned
        self.possible_here += other.possible_here
        self.possible += other.possible


@dataclass
class Case:
    """One collected test case (one parametrization) and what became of it."""

    nodeid: str
    state: str
    message: str | None = None
    markers: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    speed: dict | None = None
    import_error: bool = False


@dataclass
class TestScore:
    """One base test: its cases, points and the first reason it fell short."""

    name: str
    category: str
    file: str | None
    tally: Tally
    state: str
    message: str | None
    cases: list[Case]
    requires: list[str] = field(default_factory=list)
    gated: bool = False
    warning: str | None = None
    speed_line: str | None = None       # the figure of its slowest case: ratio, threshold, times
    tier: str | None = None             # lab.thresholds.TIERS or WITHHELD; no points (see the module docstring)
    tier_line: str | None = None


@dataclass
class TopicScore:
    topic: str
    status: str
    message: str
    tests: list[TestScore]
    correctness: Tally
    speed: Tally
    run: TopicRun
    errors: list[str] = field(default_factory=list)     # topic-level: collection or start-up errors

    @property
    def total(self) -> Tally:
        total = Tally()
        total.add(self.correctness)
        total.add(self.speed)
        return total


def _unavailable(markers: list[str], hardware: dict) -> bool:
    return "gpu" in markers and not hardware.get("cuda")


def _case(item: dict, run: TopicRun, hardware: dict) -> Case:
    nodeid, markers = item["nodeid"], item.get("markers", [])
    record = run.tests.get(nodeid)
    if record is None:
        if nodeid == run.running:
            return Case(nodeid, TIMED_OUT if run.timed_out else CRASHED, _ended_early(run), markers)
        if _unavailable(markers, hardware):
            return Case(nodeid, NOT_HERE, "needs CUDA", markers)
        return Case(nodeid, NOT_RUN, "not run: the topic ended before it", markers)
    outcome, reason = record["outcome"], record.get("skip_reason") or ""
    if outcome == "passed":
        state = PASSED
    elif outcome == "skipped":
        state = NOT_HERE if record.get("not_graded") or _unavailable(markers, hardware) else SKIPPED
    elif record.get("timed_out"):
        state = TIMED_OUT
    elif record.get("not_implemented"):
        state = NOT_STARTED
    else:
        state = ERROR if outcome == "error" else FAILED
    speed = (record.get("user_properties") or {}).get("speed")
    return Case(nodeid, state, record.get("message") or reason or None, markers,
                float(record.get("duration_s") or 0.0), speed if isinstance(speed, dict) else None,
                bool(record.get("import_error")))


def _param(case: Case) -> str:
    match = re.search(r"(\[.*\])$", case.nodeid)
    return match.group(1) + " " if match else ""


def _score_test(name: str, file: str | None, cases: list[Case], entry: Entry | None,
                fallback_markers: list[str], hardware: dict) -> TestScore:
    """Points of one base test before speed gating."""
    points = entry.points if entry else 0.0
    markers = sorted({m for c in cases for m in c.markers}) or fallback_markers
    category = SPEED if "speed" in markers else CORRECTNESS
    graded = [c for c in cases if c.state != NOT_HERE]
    passed = sum(c.state == PASSED for c in graded)
    value = points / len(cases) if cases else 0.0
    tally = Tally(value * passed, value * len(graded), points)
    if not cases:       # in the table, never collected: possible here unless it needs hardware we lack
        tally.possible_here = 0.0 if _unavailable(fallback_markers, hardware) else points
    failing = [c for c in graded if c.state != PASSED]
    message = _param(failing[0]) + (failing[0].message or failing[0].state) if failing else None
    if not cases:
        state = NOT_HERE if tally.possible_here == 0 and points else NOT_RUN
    elif not graded:
        state, message = NOT_HERE, cases[0].message
    else:
        state = PASSED if not failing else PARTIAL if passed else failing[0].state
    warning = None if entry else f"{name} ran but is not in the points table (0 points)"
    return TestScore(name, category, file, tally, state, message, cases, warning=warning)


def _satisfied(test: TestScore | None) -> bool:
    if test is None or not test.cases:
        return False
    return all(c.state == PASSED for c in test.cases if c.state != NOT_HERE)


def _gate(tests: dict[str, TestScore], table: dict[str, Entry]) -> None:
    """Withhold speed points whose required correctness tests do not all pass."""
    for test in tests.values():
        if test.category != SPEED:
            continue
        entry = table.get(test.name)
        if entry is not None and entry.requires is not None:
            test.requires = list(entry.requires)
        else:
            test.requires = [t.name for t in tests.values()
                             if t.category == CORRECTNESS and t.file == test.file and t.file is not None]
        blocking = [name for name in test.requires if not _satisfied(tests.get(name))]
        if blocking and test.tally.earned > 0:
            test.tally.earned, test.gated, test.state = 0.0, True, GATED
            test.message = f"speed points withheld until {', '.join(blocking)} pass"


def _tier(test: TestScore) -> None:
    """Set the speed line and tier of a speed test from its gradable cases' records (never its points)."""
    cases = [c for c in test.cases if c.state != NOT_HERE and c.speed]
    if test.category != SPEED or not cases:
        return
    tiers = [(c, row_tier(c.speed or {})) for c in cases]
    rank = {name: index for index, name in enumerate(TIERS)}

    def worst(pair) -> tuple[int, float]:
        case, tier = pair
        ratio = case.speed.get("ratio")
        return (rank[tier[0]] if tier else len(TIERS)), ratio if isinstance(ratio, (int, float)) else 0.0

    case, tier = min(tiers, key=worst)
    test.speed_line = speed_line(case.speed or {})
    if tier is None:                            # a measured figure: no tiers
        return
    if test.gated:
        test.tier, test.tier_line = WITHHELD, "tier withheld, as its speed points are, until the tests it requires pass"
    elif test.state == PASSED or tier[0] == BELOW:
        test.tier, test.tier_line = tier


def _ended_early(run: TopicRun) -> str:
    """Why the topic's process ended before its session did."""
    if run.timed_out:
        return f"exceeded the {run.limit_s:g} s topic time limit"
    fatal = re.search(r"Fatal Python error: ([^\n]+)", run.log_text)
    code = run.exit_code
    how = f"exit code {code}"
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        how += " (out of memory?)" if -code == getattr(signal, "SIGKILL", 9) else ""
    return f"Fatal Python error: {fatal.group(1).strip()} ({how})" if fatal else f"the process ended ({how})"


def _startup_error(run: TopicRun) -> str:
    """The first line worth showing when pytest could not even collect the topic."""
    lines = [line.strip() for line in run.log_text.splitlines() if line.strip()]
    for pattern in (r"^E\s+(.+)", r"(?:^|\s)(error: .+)", r"^(ERROR: .+)"):
        found = [m.group(1) for m in map(re.compile(pattern).search, lines) if m]
        if found:
            return found[-1]
    return lines[-1] if lines else f"pytest exited with code {run.exit_code}"


def _status(run: TopicRun, tests: list[TestScore], total: Tally) -> tuple[str, str]:
    """(status, message) of a topic; see grading/README.md for the order of precedence."""
    graded = [c for t in tests for c in t.cases if c.state != NOT_HERE]
    first = next((t for t in tests if t.state not in (PASSED, NOT_HERE) and t.message), None)
    first_line = f"{first.name}: {first.message}" if first else ""
    if run.collect_errors:
        return ERROR, run.collect_errors[0]["message"]
    if not run.items and not run.timed_out and (run.session is None or run.session.get("exitstatus")):
        if run.session is not None and run.session.get("exitstatus") == 5:
            return ERROR, f"no tests collected in exercises/{run.topic}"
        if run.session is None and run.exit_code is not None and run.exit_code < 0:
            return CRASHED, f"crashed during collection: {_ended_early(run)}"
        return ERROR, _startup_error(run)
    if run.timed_out or run.crashed:
        state = TIMED_OUT if run.timed_out else CRASHED
        where = f" in {run.running.split('::')[-1]}" if run.running else ""
        return state, f"{state}{where}: {_ended_early(run)}"
    if graded and all(c.import_error for c in graded):
        return ERROR, next(c.message or "" for c in graded)
    if total.possible_here == 0 and total.possible > 0:
        return NOT_HERE, ""
    correctness = [c for t in tests if t.category == CORRECTNESS for c in t.cases if c.state != NOT_HERE]
    if correctness and all(c.state == NOT_STARTED for c in correctness):
        return NOT_STARTED, first_line
    if any(t.state not in (PASSED, NOT_HERE) for t in tests) or total.earned < total.possible_here - 1e-9:
        return PARTIAL, first_line
    return COMPLETE, ""


def score_topic(run: TopicRun, table: dict[str, Entry], hardware: dict) -> TopicScore:
    """Score one topic run against its section of the points table."""
    by_name: dict[str, tuple[str | None, list[Case]]] = {}
    for item in run.items:
        file, cases = by_name.setdefault(item["name"], (item.get("file"), []))
        cases.append(_case(item, run, hardware))
    fallback = {item["name"]: item.get("markers", []) for item in run.fallback_items}
    tests = {name: _score_test(name, file, cases, table.get(name), [], hardware)
             for name, (file, cases) in by_name.items()}
    broken = bool(run.collect_errors) or not run.items
    for name, entry in table.items():
        if name not in tests:
            test = _score_test(name, None, [], entry, fallback.get(name, []), hardware)
            if not broken and test.state == NOT_RUN:
                test.state, test.warning = MISSING, f"{name} is in the points table but was not collected"
            elif test.state == NOT_RUN:
                test.message = "not collected: the topic failed before its tests were known"
            tests[name] = test
    _gate(tests, table)
    for test in tests.values():
        _tier(test)
    correctness, speed = Tally(), Tally()
    for test in tests.values():
        (speed if test.category == SPEED else correctness).add(test.tally)
    total = Tally()
    total.add(correctness)
    total.add(speed)
    status, message = _status(run, list(tests.values()), total)
    if run.tampering:                   # nothing of a topic whose results were tampered with counts
        for test in tests.values():
            test.tally.earned = 0.0
            test.tier = test.tier_line = None
        correctness.earned = speed.earned = total.earned = 0.0
        status, message = VOID, f"results void, tampering: {run.tampering[0]}"
    errors = [e["message"] for e in run.collect_errors]
    if status == ERROR and not run.items and not errors:
        errors = [message]
    errors += [f"tampering: {reason}" for reason in run.tampering]
    return TopicScore(run.topic, status, message, list(tests.values()), correctness, speed, run, errors)
