"""Validate a GPU for the lab in one command: GPU correctness, threshold calibration and the flip check.

    python -m grading gpu_check                         # every topic with GPU tests (make gpu-check)
    python -m grading gpu_check --topics inf12,inf20    # a subset, to fit a time window
    python -m grading gpu_check --write                 # also record this card's profile where a default fails

Three steps, each a progress line:
1. correctness: every topic's GPU tests that are not speed tests, public and hidden, with the reference
   (`-m "gpu and not speed"`); every one must pass. They time nothing, so `--jobs` topics (default 4) run at
   once, before any speed test;
2. calibration and flips: the speed tests (`-m "speed and gpu"`) with the reference and with each planted
   version marked `naive = true`, in `--runs` separate processes (default 3) that share `--measurements`
   measurements (default 10: 4, 3 and 3; `--repeat N` takes N in every process instead), one process at a
   time: three processes per implementation and the flip check's ten measurements in one pass. A naive
   version takes `--naive-measurements` (default 3: one in each process) while every reading stays under 80%
   of the threshold, and the reference's count as soon as one comes nearer (inf21's kernel-per-query-head):
   a version whose failing is far from in doubt needs no ten, and about half of a heavy topic's seconds were
   its naive processes (issue 10's 20 minutes). A threshold holds on this card when the reference clears it
   by 20% in every measurement, every naive measurement misses it, and no verdict flips. A topic whose first
   reference process measured nothing (no speed test runs on a GPU: inf00, inf03) is not run again; a naive
   version that is the baseline of some thresholds only (`naive_for`: inf02, inf21, inf23) runs only the
   tests that measure those (`-k`, from the reference's first process), not its topic's other GPU speed tests;
3. the table: per threshold, the reference's and the naive versions' ratios, the worst margins, the flips,
   and where a rule breaks, by how much. It is printed and written as JSON (`--json`). Fewer than the rule's
   ten measurements of the reference or of a naive version near its threshold, or fewer than three of a far
   one (`--runs 1`, a call cut short), is a problem of its own: such a row informs, it does not calibrate,
   until `--merge` pools enough. The rules of these verdicts, the pooling and the table are
   grading/tools/gpu_verdicts.py; this module runs the processes.

The JSON is written after every speed process too, marked `"partial": true` until the call ends, so a call
that a time limit kills (`timeout`, a device's 10-minute window) leaves what it measured; `--merge` pools it.

`--write`: for each threshold that fails on this card but can be set so that the reference clears it by
20% while every naive measurement misses it, record that threshold in `lab/profiles/<card>.toml`
(lab/thresholds.py); the calibrated defaults in the test files stay as they are. It also records, for every
paired speed-up measured (`lab.timing.compare`; not lab.figures' figures), the reference's ratio on this
card, the median of its measurements, in the profile's `[reference]` table: the bonus tiers (70% and 90%
of it) are measured against that figure. Exit status: 0 when every check holds (with --write: once
the profile makes them hold), 1 otherwise, 2 on bad arguments.

Every pytest process is forked from a server that imported torch, pytest and triton once (grading.forkserver)
instead of started as a fresh interpreter. On an H100 (session 10) that halved the small kernel topics' speed
step (inf23 45 -> 23 s, inf31 51 -> 21 s, inf21 64 -> 26 s, inf20 61 -> 30 s) and moved no ratio beyond the
fresh processes' spread. `--fresh` starts fresh interpreters instead (where forkserver is missing: always);
`--preload`, the default, is kept so that older command lines work.

`--merge A.json [--merge B.json]`: where one call cannot hold three processes (a 10-minute window; inf10 and
inf12 take 8-10 minutes), run `--runs 1` in several calls and merge their JSON: the measurements of the same
card and torch are pooled per threshold and implementation, then judged (and written) as one calibration.
Each JSON keeps its call's seconds (and each topic's speed seconds); a pooled report adds them up: where the
calls hold every topic once, that is the whole check's time.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from grading import forkserver
from grading.planted import materialized, planted_versions
from grading.processes import in_threads
from grading.runner import discover_topics, run_topic
from grading.tools.calibrate import LIMITS
from grading.tools.gpu_verdicts import (NAIVE_MEASUREMENTS, NAIVE_NEAR, RULE_MEASUREMENTS, judged,
                                        merge_reports, near_threshold, print_table, reference_figures)
from lab.cli import positive_int
from lab.paths import REPO_ROOT


def _progress(text: str, began: float) -> None:
    print(f"[{time.monotonic() - began:6.0f} s] {text}", flush=True)


def check_correctness(topic: str, out: Path, fork: bool = False) -> dict:
    """The reference on the topic's GPU tests that are not speed tests (public and hidden)."""
    run = run_topic(REPO_ROOT, topic, "solutions", LIMITS, out, pytest_args=["-m", "gpu and not speed"],
                    fork=fork)
    tests = list(run.tests.values())
    failed = [f"{t['nodeid']}: {t.get('message')}" for t in tests if t["outcome"] in ("failed", "error")]
    if run.crashed or run.timed_out:
        failed.append(f"the pytest process {'timed out' if run.timed_out else 'died'} (log: {run.log_path})")
    return {"passed": sum(t["outcome"] == "passed" for t in tests), "failed": failed,
            "skipped": sum(t["outcome"] == "skipped" for t in tests)}


def measure(topic: str, impl: str, repeat: int, out: Path, tests: list[str] | None = None,
            fork: bool = False, seconds: dict | None = None) -> list[tuple[str, dict]]:
    """(test key, comparison) for every comparison one process of the topic's GPU speed tests made; only the
    test functions named in `tests` when given (`-k`); `fork`: the process forked by grading.forkserver.
    `seconds`, when given, is filled with where the process's time went (split_seconds)."""
    select = ["-k", " or ".join(tests)] if tests else []
    run = run_topic(REPO_ROOT, topic, impl, LIMITS, out, pytest_args=["-m", "speed and gpu", *select],
                    env={"LAB_SPEED_REPEAT": str(repeat)}, hidden=False, fork=fork)
    rows = []
    for nodeid, record in run.tests.items():
        key = f"{topic}::{nodeid.split('::', 1)[-1]}"
        rows += [(key, s) for s in record.get("speeds", []) if isinstance(s, dict) and "ratio" in s]
    if seconds is not None:
        records = list(run.tests.values())
        seconds.update(split_seconds(run.duration_s, [t.get("duration_s") for t in records], [s for _, s in rows],
                                     [t.get("phases_s") for t in records], run.phases))
    return rows


def split_seconds(process_s: float, test_s: list, speeds: list[dict], test_phases: list | None = None,
                  phases: dict | None = None) -> dict:
    """Where one speed process's seconds went: the whole process (start, collection and exit included), its
    tests (pytest's setup, call and teardown), and of those lab.timing.compare's warm-up calls and measuring
    rounds; a test's time outside both builds its model and inputs (figure tests such as inf02's have
    neither). With the tests' `test_phases` (the plugin's phases_s) the fixtures' setup and teardown are told
    apart (`fixtures_s`); with the process's `phases` (grading.runner.process_phases) its start and collection
    (`start_s`) and its exit (`exit_s`). What the whole check's 20 minutes are spent on (issue 10)."""
    def total(values) -> float:
        return round(sum(v for v in values if isinstance(v, (int, float))), 1)

    split = {"process_s": round(process_s, 1), "tests_s": total(test_s),
             "warmup_s": total(s.get("warmup_s") for s in speeds),
             "measuring_s": total(s.get("measuring_s") for s in speeds)}
    fixtures = [p.get(when) for p in test_phases or () if isinstance(p, dict) for when in ("setup", "teardown")]
    if fixtures:
        split["fixtures_s"] = total(fixtures)
    split.update({key: round(value, 1) for key, value in (phases or {}).items() if key in ("start_s", "exit_s")})
    return split


def seconds_line(split: dict) -> str:
    outside = split["process_s"] - split["tests_s"]
    rest = split["tests_s"] - split["warmup_s"] - split["measuring_s"] - split.get("fixtures_s", 0.0)
    fixtures = f", fixtures {split['fixtures_s']:.1f}" if "fixtures_s" in split else ""
    line = (f"    {split['process_s']:.1f} s: tests {split['tests_s']:.1f} (warm-up {split['warmup_s']:.1f}, "
            f"measuring {split['measuring_s']:.1f}{fixtures}, the rest {rest:.1f}), ")
    if "start_s" in split and "exit_s" in split:
        other = outside - split["start_s"] - split["exit_s"]
        return line + f"start and collection {split['start_s']:.1f}, exit {split['exit_s']:.1f}, other {other:.1f}"
    return line + f"start, collection and exit {outside:.1f}"


def check_all(topics: list[str], out: Path, jobs: int, began: float, fork: bool = False) -> dict[str, dict]:
    """check_correctness for every topic, `jobs` at a time (nothing is timed); a progress line per topic."""
    def one(topic: str) -> dict:
        result = check_correctness(topic, out, fork)
        _progress(f"{topic}: GPU correctness, {result['passed']} passed, {len(result['failed'])} failed, "
                  f"{result['skipped']} skipped", began)
        return result

    _progress(f"GPU correctness tests (reference) of {len(topics)} topic(s), {jobs} at a time", began)
    return dict(zip(topics, in_threads(one, topics, jobs)))


def per_process(runs: int, measurements: int) -> list[int]:
    """`measurements` spread over `runs` processes, the first ones taking one more: (3, 10) -> [4, 3, 3]."""
    return [measurements // runs + (i < measurements % runs) for i in range(runs)]


def naive_plan(repeats: list[int], naive_measurements: int) -> list[int]:
    """A naive version's measurements per process: `naive_measurements` spread over the reference's processes
    (at least one each, at most the reference's own): (4, 3, 3) and 3 -> [1, 1, 1]."""
    return [min(r, n) for r, n in zip(repeats, per_process(len(repeats), max(naive_measurements, len(repeats))))]


def escalated(plan: list[int], done: int, target: int) -> list[int]:
    """`plan` with its processes after the first `done` taking what makes its total up to `target`."""
    left, runs = target - sum(plan[:done]), len(plan) - done
    return plan[:done] + per_process(runs, max(left, runs)) if runs else plan


def calibrate_topic(topic: str, repeats: list[int], out: Path, began: float, after_process=None,
                    fork: bool = False, processes: list | None = None,
                    naive_repeats: list[int] | None = None) -> dict:
    """{test key: {"what", "threshold", "solution": [ratios], "naive": {name: [ratios]}}}; {} at once when the
    first reference process measured nothing (the topic has no speed test that runs on this GPU).
    `after_process(table)` is called with the table so far after every process (the partial JSON); each
    process's split_seconds goes to `processes`, when given, with its implementation and number.
    Each naive version takes `naive_repeats` measurements per process (default: the reference's `repeats`);
    one whose readings come near a threshold (near_threshold) takes, in its remaining processes, what makes
    its total the reference's; one whose first process gave no ratio (inf33's no-reuse fails its test's
    reuse check) is not run again."""
    table: dict[str, dict] = {}
    with ExitStack() as stack:
        impls: list[tuple[str, str, list[str]]] = [("solution", "solutions", [])] + [
            (p.name, str(stack.enter_context(materialized(p))), p.naive_for)
            for p in planted_versions(topic) if p.naive]
        only: dict[str, list[str]] = {}     # naive version -> the tests it is the baseline of (from the reference's)
        plans = {label: list(repeats) if label == "solution" else list(naive_repeats or repeats)
                 for label, _, _ in impls}
        silent: set[str] = set()            # naive versions whose first process gave no ratio: not run again
        for run in range(1, len(repeats) + 1):
            for label, impl, naive_for in impls:
                if label in silent:
                    continue
                repeat = plans[label][run - 1]
                which = f"; only {', '.join(only[label])}" if label in only else ""
                _progress(f"{topic}: speed, {label}, process {run}/{len(repeats)} ({repeat} measurements{which})",
                          began)
                seconds: dict = {}
                rows = measure(topic, impl, repeat, out, only.get(label), fork, seconds)
                if seconds:
                    print(seconds_line(seconds), flush=True)
                    if processes is not None:
                        processes.append({"impl": label, "process": run, **seconds})
                if not rows and run == 1 and label == "solution":
                    _progress(f"{topic}: no speed test measured on this GPU; nothing to calibrate", began)
                    return table
                if run == 1 and label == "solution":
                    only = {name: tests for name, _, targets in impls[1:] if targets
                            for tests in [baseline_tests(rows, targets)] if tests}
                for key, row in rows:
                    if label != "solution" and naive_for and not baseline_of(row, naive_for):
                        continue            # this naive version is the baseline of another threshold
                    print(f"    {key.split('::', 1)[1]}: {row['ratio']:.2f}x (threshold {row['threshold']:g})",
                          flush=True)
                    entry = table.setdefault(key, {"what": row["what"], "threshold": row["threshold"],
                                                   "paired": "candidate_s" in row and bool(row.get("card")),
                                                   "solution": [], "naive": {}})
                    if label == "solution":
                        entry["solution"].append(row["ratio"])
                    else:
                        entry["naive"].setdefault(label, []).append(row["ratio"])
                if label != "solution":
                    readings = [(row["naive"][label], row["threshold"]) for row in table.values()
                                if row["naive"].get(label)]
                    if run == 1 and not readings:
                        silent.add(label)
                        _progress(f"{topic}: {label} gave no ratio (its speed tests fail before one, e.g. a check "
                                  "of what it computed): not run again", began)
                    elif sum(plans[label]) < sum(repeats) and any(near_threshold(r, t) for r, t in readings):
                        plans[label] = escalated(plans[label], run, sum(repeats))
                        if run < len(repeats):
                            _progress(f"{topic}: {label} came within {1 - NAIVE_NEAR:.0%} of a threshold: "
                                      f"{'+'.join(map(str, plans[label]))} measurements (the rule's)", began)
                if after_process is not None:
                    after_process(table)
    return table


def baseline_of(row: dict, naive_for: list[str]) -> bool:
    """Whether a naive version with this `naive_for` (parts of a comparison's `what`) is the baseline of `row`."""
    return any(target in row["what"] for target in naive_for)


def baseline_tests(rows: list[tuple[str, dict]], naive_for: list[str]) -> list[str]:
    """The test functions, among the reference's measured `rows`, whose comparisons a naive version with this
    `naive_for` is the baseline of: its processes run only those (its ratios on the others are not used)."""
    return sorted({key.split("::", 1)[1].split("[")[0] for key, row in rows if baseline_of(row, naive_for)})


def write_profile(card: str, proposals: dict[str, float], references: dict[str, float] | None = None) -> Path:
    """Merge workable thresholds and the reference's ratios into this card's profile (lab/thresholds.py)."""
    from lab.thresholds import write_profile as write
    return write(card, thresholds=proposals, references=references, written_by="python -m grading gpu_check --write")


def gpu_topics() -> list[str]:
    """Topics whose tests carry the gpu marker (read from the files: nothing is imported)."""
    return [t for t in discover_topics(REPO_ROOT)
            if any("mark.gpu" in p.read_text(encoding="utf-8")
                   for p in (REPO_ROOT / "exercises" / t).glob("test_*.py"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--topics", help="comma-separated topics (default: every topic with GPU tests)")
    parser.add_argument("--runs", type=positive_int, default=3, help="processes per implementation (default 3)")
    parser.add_argument("--measurements", type=positive_int, default=RULE_MEASUREMENTS,
                        help="measurements per implementation, spread over the processes (default 10: 4, 3, 3)")
    parser.add_argument("--repeat", type=positive_int,
                        help="measurements per process instead (--runs 3 --repeat 4: 12)")
    parser.add_argument("--naive-measurements", type=positive_int, default=NAIVE_MEASUREMENTS,
                        help=f"measurements of each naive version, one or more in each process (default "
                             f"{NAIVE_MEASUREMENTS}); one that comes within {1 - NAIVE_NEAR:.0%} under a threshold "
                             "takes the reference's count")
    parser.add_argument("--jobs", type=positive_int, default=4,
                        help="topics whose GPU correctness tests run at once (default 4; speed runs alone)")
    parser.add_argument("--skip-correctness", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--write", action="store_true",
                        help="record this card's profile: thresholds where a default fails, and the reference's "
                             "ratios (the bonus tiers' yardstick)")
    parser.add_argument("--fresh", action="store_true",
                        help="start each pytest process as a fresh interpreter (default: forked from a server that "
                             "imported torch, pytest and triton once, grading.forkserver)")
    parser.add_argument("--preload", action="store_true",
                        help="fork each pytest process from the warm server: the default (kept for older command "
                             "lines)")
    parser.add_argument("--json", type=Path, default=Path("grading-out/gpu-check.json"))
    parser.add_argument("--merge", type=Path, action="append", default=[], metavar="JSON",
                        help="pool the measurements of an earlier gpu_check JSON of this card (repeatable)")
    args = parser.parse_args(argv)
    if args.preload and args.fresh:
        parser.error("--preload and --fresh contradict each other: pick one (--preload is the default)")
    if args.preload and not forkserver.available():
        parser.error("--preload needs a POSIX system with multiprocessing's forkserver (--fresh runs without)")
    preload = not args.fresh and forkserver.available()
    if args.repeat is None and args.measurements < args.runs:
        parser.error(f"--measurements {args.measurements} cannot give each of --runs {args.runs} processes one")
    repeats = [args.repeat] * args.runs if args.repeat else per_process(args.runs, args.measurements)
    naive_repeats = naive_plan(repeats, args.naive_measurements)
    previous = []
    for path in args.merge:
        try:
            previous.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            parser.error(f"--merge {path}: cannot read a gpu_check JSON there ({error})")
    began = time.monotonic()
    if args.skip_correctness and args.skip_speed and previous:     # pool earlier calls' JSON: no GPU needed
        first = previous[0]
        report: dict = {"card": first.get("card"), "torch": first.get("torch"), "runs": 0,
                        "repeat": first.get("repeat"), "topics": {}}
    else:
        import torch
        if not torch.cuda.is_available():
            print("gpu_check needs a CUDA GPU; this machine has none (python -m grading doctor says more; "
                  "--skip-correctness --skip-speed --merge A.json ... pools earlier results anywhere)",
                  file=sys.stderr)
            return 2
        known = gpu_topics()
        topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else known
        bad = [t for t in topics if t not in known]
        if bad:
            parser.error(f"unknown or GPU-less topic(s) {bad}; topics with GPU tests: {', '.join(known)}")
        card = torch.cuda.get_device_name()
        _progress(f"{card}, torch {torch.__version__}: {len(topics)} topic(s)", began)
        report = {"card": card, "torch": torch.__version__, "runs": args.runs, "repeat": repeats,
                  "naive_repeat": naive_repeats, "preload": preload, "topics": {topic: {} for topic in topics}}

        def save_partial() -> None:
            """The report so far, after the correctness step and after each speed process: what a call killed by
            a time limit leaves."""
            _write_json(args.json, {**report, "partial": True, "seconds": round(time.monotonic() - began, 1)})

        def record_speed(topic: str, start: float, table: dict) -> None:
            entry = report["topics"][topic]
            entry["thresholds"] = judged(table)
            entry["speed_seconds"] = round(time.monotonic() - start, 1)

        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            if not args.skip_correctness:
                for topic, result in check_all(topics, Path(tmp), args.jobs, began, preload).items():
                    report["topics"][topic]["correctness"] = result
                save_partial()
            for topic in topics if not args.skip_speed else []:
                start = time.monotonic()

                def after_process(table: dict, topic: str = topic, start: float = start) -> None:
                    record_speed(topic, start, table)
                    save_partial()

                processes = report["topics"][topic].setdefault("processes", [])     # where its seconds went
                record_speed(topic, start, calibrate_topic(topic, repeats, Path(tmp), began, after_process, preload,
                                                           processes, naive_repeats))
    report["seconds"] = round(time.monotonic() - began, 1)      # this call's time, before any pooling
    if previous:
        try:
            merge_reports(report, previous)
        except ValueError as error:
            print(f"python -m grading gpu_check: {error}", file=sys.stderr)
            return 2
    ok = print_table(report)
    if args.write:
        proposals = {key: row["workable_threshold"] for t in report["topics"].values()
                     for key, row in t.get("thresholds", {}).items()
                     if row.get("misses") and row["workable_threshold"] and not row["flips"]}
        references = reference_figures(report)
        if proposals or references:
            path = write_profile(report["card"], proposals, references)
            print(f"profile written: {path} ({len(proposals)} threshold(s), {len(references)} reference ratio(s) "
                  "for the bonus tiers)")
    _write_json(args.json, report)
    pooled = f"; {report['seconds_pooled']:.0f} s in the pooled calls together (the whole check's time where " \
        "they hold every topic once)" if previous else ""
    print(f"JSON: {args.json}; {report['seconds']:.0f} s in all{pooled}")
    return 0 if ok else 1


def _write_json(path: Path, report: dict) -> None:
    """Write the report whole or not at all (a call killed mid-write leaves the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".tmp")
    part.write_text(json.dumps(report, indent=2))
    part.replace(path)


if __name__ == "__main__":
    from grading.processes import run_cli
    sys.exit(run_cli(main, "python -m grading gpu_check"))
