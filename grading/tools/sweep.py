"""Run each topic's correctness tests over many seeds in one pytest process per topic (instructors' tool).

    python -m grading sweep --topics inf14,inf24 --seeds 200                  # the reference solution
    python -m grading sweep --topics inf23 --variant inf23/inv-freq-in-float32  # a correct variant of it
    python -m grading sweep --topics inf11 --impl /tmp/mine -k cast           # any implementation root

A tolerance must hold for a correct implementation in the documented dtype on unlucky seeds: this finds the
seeds where it does not. Speed tests are left out (`-m "not speed"`). Each test that takes `seed`/`rng` runs
once per base seed FIRST .. FIRST+SEEDS-1, exactly as `pytest --seed BASE` would run it; tests marked slow,
that load the real model or tokenizer, or whose second run (the first warms up) takes over --slow-after
seconds (Triton-interpreter children, perplexity) run over the first --slow-seeds bases only; the report
shows each test's seed count and wall time. The report lists, per test, how many bases failed and which
(replay one with `pytest exercises/infNN --seed BASE -k <test>`).

Variants (`tests/variants/infNN/<name>.toml` + `.diff`, diffs against solutions/infNN like the planted
versions) are CORRECT alternatives a student may write by following the docstrings: float32 where the
solution computes in float64, the other legitimate rounding of a tie. Every test must pass them on every seed.
Exit status: 0 when no test failed on any seed, 1 otherwise, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from lab.paths import REPO_ROOT, TOPIC_NAME

VARIANTS_DIR = REPO_ROOT / "tests" / "variants"


def variants(topic: str | None = None) -> list[str]:
    pattern = f"{topic}/*.toml" if topic else "inf[0-9][0-9]/*.toml"
    return [f"{p.parent.name}/{p.stem}" for p in sorted(VARIANTS_DIR.glob(pattern))]


def materialize_variant(label: str, dest: Path) -> Path:
    """Every topic's solution copied into `dest`, with the variant's diff applied to its own topic."""
    from grading.planted import apply_diff
    topic, _, name = label.partition("/")
    diff = VARIANTS_DIR / topic / f"{name}.diff"
    if not diff.is_file() or not (VARIANTS_DIR / topic / f"{name}.toml").is_file():
        raise ValueError(f"no variant {label!r} (known: {', '.join(variants()) or 'none'})")
    solutions = REPO_ROOT / "solutions"
    for source in sorted(p for p in solutions.iterdir() if p.is_dir() and TOPIC_NAME.match(p.name)):
        shutil.copytree(source, dest / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    apply_diff(diff.read_text(), dest / topic, label)
    return dest


def sweep_topic(topic: str, impl: str, args, out: Path) -> tuple[int, dict]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               LAB_SWEEP_FIRST=str(args.first), LAB_SWEEP_SEEDS=str(args.seeds),
               LAB_SWEEP_SLOW_SEEDS=str(args.slow_seeds), LAB_SWEEP_OUT=str(out),
               LAB_SWEEP_SLOW_AFTER=str(args.slow_after))
    env.pop("LAB_SEED", None)
    cmd = [sys.executable, "-m", "pytest", f"exercises/{topic}", "-p", "grading.tools.sweep_plugin",
           "-p", "no:cacheprovider", "-q", "--impl", impl, "-m", "not speed and not gpu and not multi_gpu",
           "-W", "ignore"]
    if args.k:
        cmd += ["-k", args.k]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if proc.returncode not in (0, 1) or not results:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        print(f"{topic}: pytest exited {proc.returncode}\n{tail}", file=sys.stderr)
    return proc.returncode, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grading sweep", description=__doc__.split("\n")[0])
    p.add_argument("--topics", required=True, help="comma-separated topics, e.g. inf11,inf14")
    p.add_argument("--seeds", type=int, default=200, help="base seeds per test (default 200)")
    p.add_argument("--slow-seeds", type=int, default=20, help="for slow and real-model tests (default 20)")
    p.add_argument("--slow-after", type=float, default=2.0, metavar="S",
                   help="a test whose second run takes over S seconds (wall clock) gets --slow-seeds (default 2)")
    p.add_argument("--first", type=int, default=0, help="the first base seed (default 0)")
    p.add_argument("--impl", default="solutions", help="solutions (default), exercises or a folder like them")
    p.add_argument("--variant", help="a correct variant, tests/variants/<topic>/<name> (instead of --impl)")
    p.add_argument("-k", help="pytest -k expression: only the matching tests")
    p.add_argument("--json", type=Path, help="write {topic: {nodeid: {seeds, outcome, failed}}} here")
    args = p.parse_args(argv)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    bad = [t for t in topics if not TOPIC_NAME.match(t) or not (REPO_ROOT / "exercises" / t).is_dir()]
    if bad or not topics:
        p.error(f"unknown topic(s): {', '.join(bad) or '(none)'}")
    if args.seeds < 1 or args.slow_seeds < 1 or args.first < 0:
        p.error("--seeds and --slow-seeds must be at least 1, --first at least 0")
    with tempfile.TemporaryDirectory(prefix="lab-sweep-") as tmp:
        impl = args.impl
        if args.variant:
            if args.impl != "solutions":
                p.error("give either --impl or --variant, not both")
            try:
                impl = str(materialize_variant(args.variant, Path(tmp) / "impl"))
            except ValueError as error:
                p.error(str(error))
            description = tomllib.loads((VARIANTS_DIR / f"{args.variant}.toml").read_text()).get("description", "")
            print(f"variant {args.variant}: {description}")
        elif impl not in ("solutions", "exercises"):
            if not Path(impl).is_dir():
                p.error(f"--impl {impl!r} is not 'exercises', 'solutions' or an existing folder")
            impl = str(Path(impl).resolve())
        everything, failing = {}, 0
        for topic in topics:
            # with --json, each topic's results also go to <json stem>.<topic>.json as the sweep goes
            out = args.json.with_name(f"{args.json.stem}.{topic}.json") if args.json else Path(tmp) / f"{topic}.json"
            code, results = sweep_topic(topic, impl, args, out)
            everything[topic] = results
            runs = sum(r["seeds"] for r in results.values())
            bad_tests = {n: r for n, r in results.items() if r["failed"]}
            failing += len(bad_tests) + (code not in (0, 1))
            print(f"{topic}: {len(results)} tests, {runs} runs, {len(bad_tests)} failed on some seed")
            for nodeid, r in results.items():
                name = nodeid.split("::", 1)[-1]
                if r["outcome"] == "skipped":
                    print(f"    skipped  {name}")
                    continue
                fails = r["failed"]
                print(f"  {len(fails):4d}/{r['seeds']:<4d} {r.get('cpu_s', 0):7.1f}s  {name}" + (
                    "  seeds " + ", ".join(str(b) for b, _ in fails[:10]) + (" ..." if len(fails) > 10 else "")
                    if fails else ""))
                if fails:
                    print(f"             {fails[0][1]}")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
