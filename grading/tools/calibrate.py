"""Calibrate a topic's speed thresholds: its speed tests, run with the reference and with each planted
naive version, several times, in one process tree, on the machine at hand (an H200 for the GPU figures).

    python -m grading.tools.calibrate inf10 [inf11 ...] [--runs 3] [--repeat 1] [--flips] [--out DIR]
                                      [--write-reference] [-- pytest args]

For each topic it runs the topic's speed tests (`-m speed`, through `grading.runner`, as the grader does)
once per run with `--impl solutions` and with every planted version marked `naive = true` in
tests/planted/<topic>/<name>.toml (materialized from its diff by `grading.planted`), reads each
comparison `lab.timing.compare` made from the tests' records (`speeds`), and prints one row per threshold: the
solution's and the naive version's ratios per run, the worst margins, and whether the rule holds (the
solution clears the threshold by >= 20% in every run; the naive version misses it in every run).

The flip check (docs/thresholds.md): `--runs 2 --repeat 5 --flips` measures every comparison ten times per
implementation (`--repeat` re-measures inside one pytest process, through LAB_SPEED_REPEAT, so the model is
built once; the repeats come back as the records' further `speeds`) and prints, per threshold and
implementation, how often the test's verdict (pass or fail, after lab.timing's own retry) went each way; a
flip is a measurement whose verdict differs from the majority's. With --flips the exit code is 1 when any
verdict flipped or a rule does not hold.

`--write-reference` records, for each paired speed-up the reference measured on a GPU, the median of its
ratios in that card's profile (`[reference]` in lab/profiles/<card>.toml, lab/thresholds.py): the bonus
tiers, 70% and 90% of it, are measured against that figure on that card. A CPU gets no reference figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from grading.planted import materialized, planted_versions
from grading.runner import Limits, run_topic
from lab.paths import REPO_ROOT, TOPIC_NAME

MARGIN = 1.2
LIMITS = Limits(test_s=1800, topic_s=3600)      # calibration measures long on purpose: only a hang is cut


def run_speed_tests(topic: str, impl: str, extra: list[str], repeat: int = 1, label: str | None = None) -> list[dict]:
    """Every comparison of one run of the topic's speed tests with one implementation: the `speeds`
    each test's record carries (the first measurement, then LAB_SPEED_REPEAT's repeats)."""
    with tempfile.TemporaryDirectory(prefix=f"calibrate-{topic}-") as out:
        run = run_topic(REPO_ROOT, topic, impl, LIMITS, Path(out), pytest_args=["-m", "speed", *extra],
                        env={"LAB_SPEED_REPEAT": str(repeat)})
    outcomes = [record["outcome"] for record in run.tests.values()]
    how = "timed out" if run.timed_out else "crashed" if run.crashed else f"exit {run.exit_code}"
    counts = ", ".join(f"{outcomes.count(state)} {state}" for state in ("passed", "failed", "skipped"))
    print(f"  [{label or Path(impl).name}] {how}: {counts}", flush=True)
    return [{**speed, "key": f"{topic}::{nodeid.split('::', 1)[-1]}"}       # the key profiles use (lab.thresholds)
            for nodeid, record in run.tests.items() for speed in record.get("speeds", [])
            if isinstance(speed, dict) and "what" in speed]


def calibrate(topic: str, runs: int, extra: list[str], repeat: int = 1, verdicts: dict | None = None,
              references: dict | None = None) -> dict:
    """{what: {"threshold": t, "solution": [ratios], "<naive name>": [ratios]}} for one topic; each
    measurement's verdict (passed or not) goes to `verdicts[(topic, what, label)]` when given, and the
    reference's ratio of each paired GPU comparison to `references[(card, test key)]`."""
    table: dict[str, dict] = {}
    with ExitStack() as stack:
        naive = {p.name: (str(stack.enter_context(materialized(p))), p.naive_for)
                 for p in planted_versions(topic) if p.naive}
        impls: list[tuple[str, str, list[str]]] = [("solution", "solutions", [])]
        impls += [(name, root, for_) for name, (root, for_) in naive.items()]
        _measure(topic, runs, extra, repeat, verdicts, table, impls, references)
    return table


def _measure(topic, runs, extra, repeat, verdicts, table, impls, references=None) -> None:
    for run in range(runs):
        print(f"{topic}: run {run + 1}/{runs}", flush=True)
        for label, impl, targets in impls:
            for row in run_speed_tests(topic, impl, extra, repeat, label):
                if targets and not any(t in row["what"] for t in targets):
                    continue                    # this naive version is the baseline of another threshold
                entry = table.setdefault(row["what"], {"threshold": row["threshold"]})
                entry.setdefault(label, []).append(row["ratio"])
                if verdicts is not None:
                    verdicts.setdefault((topic, row["what"], label), []).append(bool(row["passed"]))
                if references is not None and label == "solution" and "candidate_s" in row and row.get("card"):
                    references.setdefault((row["card"], row["key"]), []).append(row["ratio"])


def write_references(references: dict) -> list[str]:
    """Record the median of the reference's ratios per (card, test key) in each card's profile; one line
    per card written, or one saying why nothing was."""
    from lab.thresholds import write_profile
    by_card: dict[str, dict[str, float]] = {}
    for (card, key), ratios in references.items():
        median = statistics.median(ratios)
        if median > 0:
            by_card.setdefault(card, {})[key] = median
    if not by_card:
        return ["no paired GPU comparison of the reference was measured: no reference figure recorded "
                "(a CPU gets none)"]
    how = "python -m grading.tools.calibrate --write-reference"
    return [f"reference ratios: {len(figures)} written to {write_profile(card, references=figures, written_by=how)}"
            for card, figures in by_card.items()]


def flips(verdicts: list[bool]) -> int:
    """Measurements whose verdict differs from the majority's (0 when every one agrees)."""
    return min(sum(verdicts), len(verdicts) - sum(verdicts))


def print_flips(verdicts: dict) -> int:
    """One line per (topic, threshold, implementation); returns the number of flips."""
    print(f"\n{'topic':6} {'impl':24} {'passed':>7} {'failed':>7} {'flips':>6}  what")
    total = 0
    for (topic, what, label), seen in sorted(verdicts.items()):
        total += flips(seen)
        print(f"{topic:6} {label:24} {sum(seen):7d} {len(seen) - sum(seen):7d} {flips(seen):6d}  {what}")
    print(f"\n{total} flip(s) in {sum(map(len, verdicts.values()))} measurements")
    return total


def verdict(entry: dict) -> str:
    t = entry["threshold"]
    sol = entry.get("solution", [])
    naive = [r for k, v in entry.items() if k not in ("threshold", "solution") for r in v]
    ok_sol = bool(sol) and min(sol) >= MARGIN * t
    ok_naive = all(r < t for r in naive)
    return "ok" if ok_sol and ok_naive else ("solution margin < 20%" if not ok_sol else "naive passes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.tools.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--runs", type=int, default=3, help="pytest processes per implementation")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each comparison per process")
    parser.add_argument("--flips", action="store_true", help="print the flip table; exit 1 on a flip or a broken rule")
    parser.add_argument("--out", type=Path, help="write the figures as JSON into this folder")
    parser.add_argument("--write-reference", action="store_true",
                        help="record the reference's median ratio per GPU speed test in the card's profile (tiers)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []       # after --: extra pytest arguments
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    known = sorted(p.name for p in (REPO_ROOT / "exercises").iterdir() if TOPIC_NAME.match(p.name))
    bad = [t for t in args.topics if t not in known]
    if bad:
        print(f"unknown topic(s) {', '.join(bad)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    verdicts: dict = {}
    references: dict = {}
    results = {topic: calibrate(topic, args.runs, extra, args.repeat, verdicts, references) for topic in args.topics}
    print(f"\n{'topic':6} {'threshold':>9}  {'solution ratios':24} {'naive ratios':30} verdict  what")
    for topic, table in results.items():
        for what, entry in table.items():
            sol = " ".join(f"{r:.2f}" for r in entry.get("solution", []))
            naive = "; ".join(f"{k}: " + " ".join(f"{r:.2f}" for r in v) for k, v in entry.items()
                              if k not in ("threshold", "solution"))
            print(f"{topic:6} {entry['threshold']:9.2f}  {sol:24} {naive:30} {verdict(entry):8} {what}")
    if args.write_reference:
        print("\n".join(write_references(references)))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "calibration.json").write_text(json.dumps(results, indent=2))
    if args.flips:
        broken = [what for table in results.values() for what, entry in table.items() if verdict(entry) != "ok"]
        return 1 if print_flips(verdicts) or broken else 0
    return 0


if __name__ == "__main__":
    from grading.processes import run_cli
    sys.exit(run_cli(main, "python -m grading.tools.calibrate"))
