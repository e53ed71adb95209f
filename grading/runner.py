"""Running topics: one pytest process per topic, with a per-test and a per-topic time limit.

Each topic runs as `python -m pytest exercises/infNN --impl X -p grading.plugin ...` in its own process
group; the plugin sends one JSON record per event through a pipe that this process reads as they arrive
(see `grading.plugin`), and copies to `<out>/records/<topic>.jsonl` what it received.
Invariants:
- the records must form one session in order: `seq` 0, 1, 2, ...; "collect_error"s, one "collection",
  then per collected test one "start" and its one "test", then one "session", then nothing. Anything else
  (a record repeated, out of order, unknown, for a test not collected or not running, after "session",
  or a damaged line before the last) voids the topic: `TopicRun.tampering` says why, and it scores 0;
- a topic can only cost itself: when its wall-clock limit passes, or when its pytest process has ended,
  its whole process group is killed, and the records already received are kept; a crash (segfault,
  os._exit, OOM kill) is noticed because the closing "session" record is missing;
- the grader never raises because of what a topic did: every outcome becomes a `TopicRun`;
- the topic's combined stdout/stderr goes to `<out>/logs/<topic>.log`, capped (grading.processes, which
  starts, limits and kills the processes), so a test that prints forever cannot fill the disk;
- with a memory limit, the topic's processes get it as their address-space limit (RLIMIT_AS, POSIX), so a
  runaway allocation fails as a MemoryError in one test instead of taking the machine; core dumps are off;
- instructor-only tests in `ROOT/grading/hidden/<topic>/` (absent from the student release) run with the
  topic's own tests when they are there.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from grading import hardware
from grading.plugin import RESULTS_ENV
from grading.processes import execute, in_threads
from lab.paths import REPO_ROOT, TOPIC_NAME

GRADING_PARENT = REPO_ROOT                                   # makes `-p grading.plugin` importable
_SEED_LINE = re.compile(r"lab seed:\s*(-?\d+)")


HIDDEN_TESTS = Path("grading") / "hidden"
# Plugins a topic's process does without. hypothesis' pytest plugin only adds its options and a summary
# (inf31's workloads run, shrink and report their failing program the same without it), yet its summary
# imports all of hypothesis: ~1 s of CPU in every topic's process, the largest part of a cheap topic's.
QUIET_PLUGINS = ("-p", "no:hypothesispytest")


@dataclass(frozen=True)
class Limits:
    """Seconds: `test_s` per test (pytest-timeout), `topic_s` per topic process (wall clock); bytes of
    address space per process (`memory_bytes`, None for no limit)."""

    test_s: float
    topic_s: float
    memory_bytes: int | None = None


@dataclass
class TopicRun:
    """What one topic's process left behind. `tests` maps nodeid to its "test" record, in run order."""

    topic: str
    items: list[dict] = field(default_factory=list)            # collected tests, in run order
    collect_errors: list[dict] = field(default_factory=list)
    tests: dict[str, dict] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    session: dict | None = None
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    limit_s: float = 0.0
    log_path: Path | None = None
    log_text: str = ""                                          # head and tail of the output
    seed: int | None = None
    fallback_items: list[dict] = field(default_factory=list)    # collected from the solutions
    tampering: list[str] = field(default_factory=list)          # why the results are void, if they are
    phases: dict[str, float] = field(default_factory=dict)      # process_phases: start_s, exit_s (the pipe only)

    @property
    def crashed(self) -> bool:
        return self.session is None and not self.timed_out

    @property
    def running(self) -> str | None:
        """The test that was running when the process ended early, if any."""
        if self.started and self.started[-1] not in self.tests:
            return self.started[-1]
        return None


def discover_topics(root: Path) -> list[str]:
    """Topic folders `exercises/infNN/` that hold at least one `test_*.py`, sorted."""
    base = root / "exercises"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and TOPIC_NAME.match(p.name) and any(p.glob("test_*.py")))


def pytest_command(topic: str, impl: str, limits: Limits, root: Path, collect_only: bool = False,
                   pytest_args: tuple[str, ...] | list[str] = (), hidden: bool = True) -> list[str]:
    """The pytest command line for one topic (run with cwd=root); `pytest_args` (e.g. `-k`, `-m`) go last."""
    hidden_dir = root / HIDDEN_TESTS / topic
    hidden_tests = [f"{HIDDEN_TESTS.as_posix()}/{topic}"] if hidden and hidden_dir.is_dir() else []
    cmd = [sys.executable, "-m", "pytest", f"exercises/{topic}", *hidden_tests, "--impl", impl, "-p", "grading.plugin",
           "-p", "no:cacheprovider", *QUIET_PLUGINS, "-q", "--continue-on-collection-errors",
           f"--rootdir={root}", f"--confcutdir={root}"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append(f"--timeout={limits.test_s:g}")
    if collect_only:
        cmd.append("--collect-only")
    return cmd + list(pytest_args)


def _environment(channel: str, impl: str, seed: int | None, root: Path,
                 sandbox_env: dict[str, str] | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The topic's environment. With `sandbox_env` (a submission's sandbox: grading.isolate), the
    environment is built from scratch, so that nothing in it names the instructor's checkout; `extra`
    (the instructors' tools: OMP_NUM_THREADS, LAB_SPEED_REPEAT) is added on top."""
    if sandbox_env is not None:
        env = dict(sandbox_env)
    else:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}    # nothing may inject options
    env.update(extra or {})
    if seed is not None:
        env["LAB_SEED"] = str(seed)                 # the lab's conftest seeds every topic from it
    own = root if (root / "grading" / "plugin.py").is_file() else GRADING_PARENT   # the root's own grader
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(own)]
    env.update({RESULTS_ENV: channel, "LAB_IMPL": impl, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(paths)})
    return env


class _Channel(threading.Thread):
    """The records' pipe (POSIX): the child inherits the write end; this thread reads lines as they come.

    Elsewhere (no descriptor passing), a file the child appends to, read when it has ended."""

    MAX_LINE = 4 << 20

    def __init__(self, fallback_file: Path):
        super().__init__(daemon=True)
        self.lines: list[bytes] = []
        self.arrived: list[float] = []          # time.monotonic() as each line came (the pipe only)
        self.file = fallback_file
        self.read_fd: int | None = None
        self.write_fd: int | None = None
        if os.name == "posix":
            self.read_fd, self.write_fd = os.pipe()

    @property
    def spec(self) -> str:
        return f"fd:{self.write_fd}" if self.write_fd is not None else str(self.file)

    def child_started(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)             # only the child holds the write end now
            self.write_fd = None
            self.start()

    def run(self) -> None:
        if self.read_fd is None:                # no pipe (not POSIX): the child appends to self.file
            return
        pending = b""
        with open(self.read_fd, "rb", buffering=0) as pipe:
            for chunk in iter(lambda: pipe.read(65536), b""):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                self._add(lines)
                if len(pending) > self.MAX_LINE:          # a record is never this long: flooding
                    self._add([b"<an endless line>"])
                    pending = b""
        if pending:
            self._add([pending])                          # cut short by a kill: no newline

    def _add(self, lines: list[bytes]) -> None:
        now = time.monotonic()
        self.arrived += [now] * len(lines)
        self.lines += lines

    def finish(self, timeout_s: float = 5.0) -> list[bytes]:
        if self.read_fd is None:                         # the file fallback
            self.lines = self.file.read_bytes().split(b"\n") if self.file.exists() else []
            if self.lines and self.lines[-1] == b"":
                self.lines.pop()
            return list(self.lines)
        if self.write_fd is not None:                     # the child never started
            os.close(self.write_fd)
            self.write_fd = None
            os.close(self.read_fd)
            return []
        self.join(timeout=timeout_s)     # a grandchild that escaped the group may hold the pipe: don't wait
        return list(self.lines)


_KINDS = ("collect_error", "collection", "start", "test", "session")


def check_records(lines: list[bytes]) -> tuple[list[dict], list[str]]:
    """The records of one session, in order, and what makes them untrustworthy ([] when nothing does).

    Only the last line may be damaged (a kill mid-write); it is dropped. Any other breach of the
    protocol (see the module docstring) is tampering: the records up to it are returned, and the reason."""
    records: list[dict] = []
    collected: set[str | None] | None = None       # node ids as the records give them (None if absent)
    started: set[str | None] = set()
    finished: set[str | None] = set()
    running: str | None = None
    session = False
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if index == len(lines) - 1:
                break
            return records, [f"record {index}: not a record the grader's plugin writes"]
        kind = record.get("kind") if isinstance(record, dict) else None
        nodeid = record.get("nodeid") if isinstance(record, dict) else None
        problem = None
        if not isinstance(record, dict) or record.get("seq") != index:
            problem = f"out of sequence (seq {record.get('seq') if isinstance(record, dict) else '?'}, " \
                      f"expected {index}): a record was repeated, replayed or forged"
        elif session:
            problem = f"a {kind!r} record after the session ended"
        elif kind not in _KINDS:
            problem = f"an unknown record kind {kind!r}"
        elif kind == "collect_error" and collected is not None:
            problem = "a collection error after collection ended"
        elif kind == "collection":
            if collected is not None:
                problem = "a second collection"
            else:
                collected = {item.get("nodeid") for item in record.get("items") or [] if isinstance(item, dict)}
        elif kind == "start":
            if collected is None or nodeid not in collected or nodeid in started or running is not None:
                problem = f"an unexpected start of {nodeid!r}"
            started.add(nodeid)
            running = nodeid
        elif kind == "test":
            if nodeid != running or nodeid in finished:
                problem = f"a result for {nodeid!r}, which was not running (repeated or forged)"
            finished.add(nodeid)
            running = None
        elif kind == "session":
            session = True
        if problem:
            return records, [f"record {index}: {problem}"]
        records.append(record)
    return records, []


def read_records(path: Path) -> list[dict]:
    """The records copied to `path` (`<out>/records/<topic>.jsonl`), as `check_records` accepts them."""
    if not path.exists():
        return []
    return check_records(path.read_bytes().splitlines())[0]


def load_run(topic: str, path: Path) -> TopicRun:
    """A topic's run read back from the records a grading copied to `path` (`<out>/records/<topic>.jsonl`):
    what it collected and each test's result (no log, exit code or timing)."""
    run = TopicRun(topic)
    _fill(run, read_records(path))
    return run


def _fill(run: TopicRun, records: list[dict]) -> None:
    for record in records:
        kind = record.get("kind")
        if kind == "collection":
            run.items = record.get("items", [])
            run.seed = record.get("seed", run.seed)
        elif kind == "collect_error":
            run.collect_errors.append(record)
        elif kind == "start":
            run.started.append(record["nodeid"])
        elif kind == "test":
            run.tests[record["nodeid"]] = record
        elif kind == "session":
            run.session = record
            run.seed = record.get("seed", run.seed)
    if run.seed is None:
        match = _SEED_LINE.search(run.log_text)
        run.seed = int(match.group(1)) if match else None


def run_topic(root: Path, topic: str, impl: str, limits: Limits, out_dir: Path,
              collect_only: bool = False, seed: int | None = None, *, pytest_args: list[str] | None = None,
              env: dict[str, str] | None = None, hidden: bool = True,
              sandbox_env: dict[str, str] | None = None, fork: bool = False) -> TopicRun:
    """Run (or only collect) one topic in its own process and read back what it recorded.

    The grader runs whole topics; the instructors' tools narrow a run with `pytest_args` (`-k`, `-m`),
    set variables with `env` (e.g. OMP_NUM_THREADS=1, LAB_SPEED_REPEAT) and leave the hidden tests out
    with `hidden=False`; they read the same records (speed figures: each test record's `speeds`). `fork`
    (gpu_check's default, unless `--fresh`; never with `sandbox_env`) forks the process from grading.forkserver's
    warm server."""
    if fork and sandbox_env is not None:
        raise ValueError("a sandboxed topic (a submission) runs in a fresh interpreter, never forked")
    suffix = ".collect" if collect_only else ""
    (out_dir / "records").mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    records = out_dir / "records" / f"{topic}{suffix}.jsonl"
    records.unlink(missing_ok=True)
    log_path = out_dir / "logs" / f"{topic}{suffix}.log"
    cmd = pytest_command(topic, impl, limits, root, collect_only, pytest_args or (), hidden)
    channel = _Channel(records)
    environment = _environment(channel.spec, impl, seed, root, sandbox_env, env)
    began = time.monotonic()
    try:
        code, timed_out, seconds, text = execute(cmd, root, environment, log_path, limits.topic_s,
                                                limits.memory_bytes, channel, fork)
    finally:
        lines = channel.finish()
    ended = time.monotonic()
    if channel.read_fd is not None:
        records.write_bytes(b"".join(line + b"\n" for line in lines))     # what came, for the record
    run = TopicRun(topic, exit_code=code, timed_out=timed_out, duration_s=seconds, limit_s=limits.topic_s,
                   log_path=log_path, log_text=text)
    accepted, run.tampering = check_records(lines)
    _fill(run, accepted)
    run.phases = process_phases(accepted, channel.arrived, began, ended)
    return run


def process_phases(records: list[dict], arrived: list[float], began: float, ended: float) -> dict[str, float]:
    """Where a topic's process spent the seconds outside its tests, by when its records reached the parent
    (`arrived`, time.monotonic() per record line; empty without the pipe): `start_s` from the start (or fork)
    to the collection record (the interpreter's start, imports, conftest, collection), `exit_s` from the
    session record to the process's end (pytest's and the interpreter's exit: finalizers, atexit hooks in a
    fresh interpreter, the CUDA context). A diagnosis for gpu_check's seconds line (issue 10's 20 minutes),
    never graded."""
    phases: dict[str, float] = {}
    for index, record in enumerate(records[:len(arrived)]):
        if record.get("kind") == "collection":
            phases["start_s"] = round(arrived[index] - began, 3)
        elif record.get("kind") == "session":
            phases["exit_s"] = round(ended - arrived[index], 3)
    return phases


def run_topics(root: Path, topics: list[str], impl: str, limits: Limits, out_dir: Path,
               seed: int | None = None, progress=None, fallback_impl: str | None = None,
               sandboxes=None, jobs: int = 1) -> list[TopicRun]:
    """Run topics one after another (never in parallel: speed tests need the machine to themselves).

    When a topic's own collection failed, `fallback_impl` (default: the reference, when
    `solutions/<topic>` exists) is collected too, so that the tests the student's code hid still show with
    their markers (speed, gpu). With `sandboxes` (grading.isolate.Sandboxes), every run, the fallback
    collection included, happens in a fresh sandbox of its own, and what the topic changed there that it
    may not is added to its `tampering`.

    `jobs` > 1 runs that many topics at once, each still in its own process group with its own pipe,
    records and log: for checks whose speed figures do not count (the lab's self-test grading the
    untouched stubs, where every test stops at a stub before anything is timed); never with `sandboxes`.
    The runs come back in the order of `topics` whatever order they finish in."""
    if jobs > 1 and sandboxes is not None:
        raise ValueError("topics graded in sandboxes run one at a time (jobs=1)")

    def one(index: int, topic: str) -> TopicRun:
        if progress:
            progress(f"[{index}/{len(topics)}] {topic} ...")
        with _place(sandboxes, topic, root) as place:
            run = run_topic(place.root, topic, impl, limits, out_dir, seed=seed, sandbox_env=place.env)
            run.tampering += place.check()
        if progress:
            how = "killed at the topic time limit" if run.timed_out else \
                f"process died (exit code {run.exit_code})" if run.crashed else "done"
            how = f"results void ({run.tampering[0]})" if run.tampering else how
            progress(f"[{index}/{len(topics)}] {topic}: {how} in {run.duration_s:.1f} s")
        fallback = fallback_impl or ("solutions" if (root / "solutions" / topic).is_dir() else None)
        if (run.collect_errors or not run.items) and fallback and impl != fallback:
            with _place(sandboxes, None, root) as place:
                fallback = str(getattr(place, "stubs", None) or fallback)
                run.fallback_items = run_topic(place.root, topic, fallback, limits, out_dir, True, seed,
                                               sandbox_env=place.env).items
        return run

    if jobs <= 1:
        return [one(index, topic) for index, topic in enumerate(topics, 1)]
    return in_threads(lambda numbered: one(*numbered), list(enumerate(topics, 1)), jobs)


class _InPlace:
    """The root itself (no sandbox): nothing to check afterwards."""

    def __init__(self, root: Path):
        self.root, self.env = root, None

    def check(self) -> list[str]:
        return []


def _place(sandboxes, topic: str | None, root: Path):
    return sandboxes.topic(topic) if sandboxes is not None else contextlib.nullcontext(_InPlace(root))


def probe_hardware(runs: list[TopicRun], timeout_s: float = 120.0) -> dict:
    """The hardware a topic's plugin saw, or else what a throw-away `python -m grading.hardware` sees."""
    for run in runs:
        seen = (run.session or {}).get("hardware")
        if seen:
            return dict(hardware.EMPTY, **seen)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(GRADING_PARENT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    try:
        done = subprocess.run([sys.executable, "-m", "grading.hardware"], capture_output=True, text=True,
                              timeout=timeout_s, env=env, check=False)
        return dict(hardware.EMPTY, **json.loads(done.stdout.strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, OSError):
        return dict(hardware.describe(), probe_error="the hardware probe failed or timed out")
