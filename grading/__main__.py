"""`python -m grading`: grade topics, print the scorecard, write the files asked for.

    python -m grading [--impl X | --submission PATH] [options]    # grade (see grading/README.md)
    python -m grading release DIR [--autograder] [--zip]           # the student release (grading/tools/release.py)
    python -m grading doctor                                       # check the environment (grading/tools/doctor.py)
    python -m grading classroom --write|--check                    # GitHub Classroom's autograding.json
    python -m grading stubs|notebooks --write|--check              # generated stubs and notebooks
    python -m grading topic infNN                                  # a new topic's skeleton
    python -m grading gpu_check [--topics ...] [--write]           # validate a GPU: correctness, thresholds, flips
    python -m grading sweep --topics ... [--seeds 200] [--variant]  # correctness tests over many seeds
  (the instructor tools are in grading/tools/: python -m grading.tools.<name> works too)

Exit codes: 0 when grading ran (whatever the score), 2 for a mistake in the arguments (bad --topics,
--impl, --submission, --root, --points, limits, or an output path that cannot be written), reported in one
line without a traceback; 130 when interrupted (Ctrl-C), after killing the running topic.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grading import export, history, isolate, processes, report, rubric, runner, score, scorecard
from grading.guard import scan as audit
from lab.cli import checked

SUBCOMMANDS = {name: f"grading.tools.{name}" for name in ("release", "doctor", "classroom", "stubs", "notebooks",
                                                         "calibrate", "topic", "gpu_check", "sweep")}
GIB = 2**30


_seconds = checked(float, "a number of seconds", lambda v: v > 0, "give a positive number of seconds")
_gib = checked(float, "a number of GiB", lambda v: v >= 0, "give GiB >= 0 (0: no limit)")
_jobs = checked(int, "a whole number of topics", lambda v: v >= 1, "give 1 or more topics at once")


def default_memory_gib() -> float:
    """16 GiB of address space per topic on a CPU machine; no limit where CUDA is (it maps huge ranges)."""
    has_cuda = any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))
    return 0.0 if has_cuda or os.name != "posix" else 16.0


def _env_seed() -> int:
    try:
        return int(os.environ["LAB_SEED"])
    except (KeyError, ValueError):
        return random.SystemRandom().randrange(2**31)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grading", description=(
        "Run each topic's tests in its own process and print a scorecard (see grading/README.md)."))
    p.add_argument("--impl", default="exercises", help="exercises (default), solutions, or a folder "
                   "laid out like them (<folder>/infNN/...)")
    p.add_argument("--submission", type=Path, metavar="PATH", help="grade a student's submission in isolation "
                   "(a checkout, a folder like exercises/, module files, or a .zip): only the stub modules are "
                   "taken, into a clean copy of the root; see grading/isolate.py")
    p.add_argument("--memory-limit", type=_gib, default=None, metavar="GIB",
                   help="address space per topic process in GiB, 0 for none (default: 16 on a CPU, none with CUDA)")
    p.add_argument("--no-history", action="store_true", help="do not append this run to OUT/history.jsonl")
    p.add_argument("--topics", help="comma-separated topics, e.g. inf00,inf10 (default: all)")
    p.add_argument("--root", type=Path, default=runner.GRADING_PARENT, help="the lab's root (default: %(default)s)")
    p.add_argument("--points", type=Path, default=None, metavar="FILE", help="one points table (TOML, a section "
                   "per topic) instead of the [points] of each exercises/infNN/topic.toml under --root")
    p.add_argument("--test-timeout", type=_seconds, default=300.0, metavar="S", help="per test (default 300)")
    p.add_argument("--topic-timeout", type=_seconds, default=1200.0, metavar="S",
                   help="per topic, wall clock; the topic's processes are killed after it (default 1200)")
    p.add_argument("--seed", type=int, help="base seed for every topic's random inputs (passed as LAB_SEED; "
                   "default: LAB_SEED if set, else a fresh one, printed with the scorecard)")
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N", help="grade N topics at once (default 1). Speed "
                   "tests then share the machine: for checks whose speed figures do not count (the lab's self-test "
                   "of the untouched stubs); not with --submission")
    p.add_argument("--out", type=Path, help="logs, raw records and scorecard.json (default: ROOT/grading-out)")
    for name, what in (("json", "the scorecard as JSON (grading/scorecard_schema.json)"),
                       ("markdown", "the scorecard as Markdown"), ("gradescope", "Gradescope results.json"),
                       ("junit", "JUnit XML")):
        p.add_argument(f"--{name}", type=Path, metavar="PATH", help=f"write {what} to PATH")
    return p


def _resolve(args: argparse.Namespace, p: argparse.ArgumentParser) -> tuple[Path, list[str], str, dict]:
    """Check the arguments; any mistake ends in p.error (exit 2, one message)."""
    root = args.root.resolve()
    known = runner.discover_topics(root)
    if not known:
        p.error(f"no topics under {root / 'exercises'} (folders infNN holding test_*.py); check --root")
    topics = known
    if args.topics is not None:
        topics = [t.strip() for t in args.topics.split(",") if t.strip()]
        unknown = [t for t in topics if t not in known]
        if unknown or not topics:
            p.error(f"unknown topic(s) {', '.join(unknown) or '(none given)'}; known topics: {', '.join(known)}")
    impl = args.impl
    if args.submission is not None and impl != "exercises":
        p.error("give either --impl or --submission, not both")
    if impl == "solutions" and not (root / "solutions").is_dir():     # a student release: nothing is written
        print("python -m grading: the reference solutions are not included in this release (there is no "
              "solutions/ folder); grade your own code with `make grade` or `python -m grading`", file=sys.stderr)
        sys.exit(2)
    if args.submission is not None and args.jobs > 1:
        p.error("--jobs: a submission's topics are graded one at a time, each in its own sandbox")
    if impl not in ("exercises", "solutions"):
        if not Path(impl).is_dir():
            p.error(f"--impl {impl!r} is not 'exercises', 'solutions' or an existing folder")
        impl = str(Path(impl).resolve())
    for name in ("json", "markdown", "gradescope", "junit"):
        path = getattr(args, name)
        if path is not None and path.is_dir():
            p.error(f"--{name} {path} is a folder; give a file path")
    try:
        table = rubric.load_points(args.points, root=root)
    except rubric.PointsError as exc:
        p.error(str(exc))
    return root, topics, impl, table


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(args, p, root: Path, topics: list[str], impl: str, limits: runner.Limits, out: Path, seed: int):
    """(runs, submission manifest or None): grade the root, or a submission in a clean sandbox."""
    if args.submission is None:
        return runner.run_topics(root, topics, impl, limits, out, seed, _progress, jobs=args.jobs), None
    with tempfile.TemporaryDirectory(prefix="lab-submission-") as work:
        try:
            manifest = isolate.collect(args.submission, root, topics, Path(work))
        except (isolate.SubmissionError, OSError) as exc:
            p.error(str(exc))
        manifest["warnings"] = audit.audit_manifest(manifest, root) + \
            [f"isolation: {line}" for line in isolate.exposures(root)]
        _progress(f"submission {args.submission}: {len(manifest['files'])} file(s) taken, "
                  f"{len(manifest['ignored'])} ignored; grading each topic in a fresh copy of {root}")
        try:
            sandboxes = isolate.Sandboxes(root, Path(work), manifest)     # verifies the oracle cache first
        except (isolate.SubmissionError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
            p.error(str(exc))
        if sandboxes.trusted.rebuilt:
            _progress(f"oracle cache rebuilt from the GGUF file and verified: {', '.join(sandboxes.trusted.rebuilt)}")
        runs = runner.run_topics(root, topics, "exercises", limits, out, seed, _progress,
                                 fallback_impl=str(sandboxes.stubs), sandboxes=sandboxes)
    del manifest["base"]                    # a temporary folder, gone now
    return runs, manifest


def main(argv: list[str] | None = None) -> int:
    """`python -m grading [options]` grades; `python -m grading TOOL ...` runs an instructors' tool. Ctrl-C and
    SIGTERM stop either with a line and the topics' processes killed (processes.run_cli)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        tool = importlib.import_module(SUBCOMMANDS[argv[0]])
        return processes.run_cli(lambda: tool.main(argv[1:]), f"python -m grading {argv[0]}")
    return processes.run_cli(lambda: _grade(argv), "python -m grading", lost="no scorecard written")


def _grade(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    root, topics, impl, table = _resolve(args, p)
    out = (args.out or root / "grading-out").resolve()
    memory_gib = default_memory_gib() if args.memory_limit is None else args.memory_limit
    limits = runner.Limits(args.test_timeout, args.topic_timeout, int(memory_gib * GIB) or None)
    started, clock = dt.datetime.now(dt.timezone.utc), time.monotonic()
    seed = args.seed if args.seed is not None else _env_seed()
    runs, manifest = _run(args, p, root, topics, impl, limits, out, seed)      # Ctrl-C, SIGTERM: main's run_cli
    hardware = runner.probe_hardware(runs)
    scores = [score.score_topic(run, table.get(run.topic, {}), hardware) for run in runs]
    doc = scorecard.build(scores, impl=impl, root=str(root), hardware=hardware, started_at=started,
                          duration_s=time.monotonic() - clock, test_timeout_s=limits.test_s,
                          topic_timeout_s=limits.topic_s)
    if manifest is not None:
        doc["impl"], doc["submission"] = "submission", manifest
        doc["warnings"] += manifest.pop("warnings")
    doc["progress"] = history.progress(out, doc)
    if not args.no_history:
        history.append(out, doc)
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print(report.terminal(doc, shutil.get_terminal_size((120, 24)).columns, color), end="")
    outputs = {"json": export.json_text, "markdown": report.markdown, "junit": export.junit,
               "gradescope": lambda d: export.json_text(export.gradescope(d))}
    targets = [(out / "scorecard.json", export.json_text)]
    targets += [(getattr(args, name), render) for name, render in outputs.items() if getattr(args, name)]
    for path, render in targets:
        try:
            export.write_text(path, render(doc))
        except OSError as exc:
            print(f"python -m grading: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    print(f"details: {out / 'scorecard.json'} (logs in {out / 'logs'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
