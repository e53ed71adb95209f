"""Calibrate a topic's speed thresholds: its speed tests, run with the reference and with each planted
naive version, several times, in one process tree, on the machine at hand (an H200 for the GPU figures).

    python -m grading.calibrate inf10 [inf11 ...] [--runs 3] [--out DIR]

For each topic it runs `pytest exercises/<topic> -m speed` once per run with `--impl solutions` and with
every planted implementation marked `naive = true` in tests/planted/<topic>/*/planted.toml, collects each
comparison `lab.timing.compare` made (through LAB_SPEED_LOG), and prints one row per threshold: the
solution's and the naive version's ratios per run, the worst margins, and whether the rule holds (the
solution clears the threshold by >= 20% in every run; the naive version misses it in every run).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MARGIN = 1.2


def naive_impls(topic: str) -> list[Path]:
    found = []
    for meta in sorted((REPO_ROOT / "tests" / "planted" / topic).glob("*/planted.toml")):
        if tomllib.loads(meta.read_text()).get("naive"):
            found.append(meta.parent)
    return found


def run_speed_tests(topic: str, impl: str, extra: list[str]) -> list[dict]:
    """Every comparison of one run of the topic's speed tests with one implementation."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as log:
        path = log.name
    env = {**os.environ, "LAB_SPEED_LOG": path, "LAB_IMPL": impl}
    cmd = [sys.executable, "-m", "pytest", f"exercises/{topic}", "-m", "speed", "--impl", impl, "-q",
           "-p", "no:cacheprovider", *extra]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    print(f"  [{Path(impl).name}] pytest exit {proc.returncode}: {tail[0]}", flush=True)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    os.unlink(path)
    return rows


def calibrate(topic: str, runs: int, extra: list[str]) -> dict:
    """{what: {"threshold": t, "solution": [ratios], "<naive name>": [ratios]}} for one topic."""
    table: dict[str, dict] = {}
    impls = [("solution", "solutions")] + [(p.name, str(p)) for p in naive_impls(topic)]
    for run in range(runs):
        print(f"{topic}: run {run + 1}/{runs}", flush=True)
        for label, impl in impls:
            for row in run_speed_tests(topic, impl, extra):
                entry = table.setdefault(row["what"], {"threshold": row["threshold"]})
                entry.setdefault(label, []).append(row["ratio"])
    return table


def verdict(entry: dict) -> str:
    t = entry["threshold"]
    sol = entry.get("solution", [])
    naive = [r for k, v in entry.items() if k not in ("threshold", "solution") for r in v]
    ok_sol = bool(sol) and min(sol) >= MARGIN * t
    ok_naive = all(r < t for r in naive)
    return "ok" if ok_sol and ok_naive else ("solution margin < 20%" if not ok_sol else "naive passes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the figures as JSON into this folder")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    known = sorted(p.name for p in (REPO_ROOT / "exercises").glob("inf[0-9][0-9]"))
    bad = [t for t in args.topics if t not in known]
    if bad:
        print(f"unknown topic(s) {', '.join(bad)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    extra = [a for a in args.pytest_args if a != "--"]
    results = {topic: calibrate(topic, args.runs, extra) for topic in args.topics}
    print(f"\n{'topic':6} {'threshold':>9}  {'solution ratios':24} {'naive ratios':30} verdict  what")
    for topic, table in results.items():
        for what, entry in table.items():
            sol = " ".join(f"{r:.2f}" for r in entry.get("solution", []))
            naive = "; ".join(f"{k}: " + " ".join(f"{r:.2f}" for r in v) for k, v in entry.items()
                              if k not in ("threshold", "solution"))
            print(f"{topic:6} {entry['threshold']:9.2f}  {sol:24} {naive:30} {verdict(entry):8} {what}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "calibration.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
