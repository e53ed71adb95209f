"""A topic's process: started (a fresh interpreter, or forked by grading.forkserver), logged, cut at its time
limit and killed with everything it started; and how the grader and its tools stop on Ctrl-C or SIGTERM.

grading.runner says what a topic runs and reads what it recorded; this module keeps the processes:
- `execute` starts one in a session and process group of its own (a kill reaches its whole tree), with core
  dumps off and, where asked, an address-space limit; copies its output to a log capped at `LOG_CAP_BYTES`
  (a test that prints forever cannot fill the disk); and kills its group when it ends or its limit passes;
- the topics running now are in `_LIVE`, so that Ctrl-C or SIGTERM can kill them (`kill_running_topics`):
  `run_cli` is every command's entry point (130 on Ctrl-C, 143 on SIGTERM, one line, no traceback), and
  `in_threads` runs topics several at a time without leaving them behind when interrupted.
"""
from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from grading.plugin import RESULTS_ENV

LOG_CAP_BYTES = 8 * 2**20
_TAIL_BYTES = 64 * 2**10


class _LogPump(threading.Thread):
    """Copies a pipe to a log file up to LOG_CAP_BYTES, keeping the first and last _TAIL_BYTES in memory."""

    def __init__(self, pipe, log_path: Path):
        super().__init__(daemon=True)
        self.pipe, self.log_path = pipe, log_path
        self.head = bytearray()
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_size = self.total = 0

    def run(self) -> None:
        with open(self.log_path, "wb") as log:
            for chunk in iter(lambda: self.pipe.read1(65536), b""):
                if self.total < LOG_CAP_BYTES:
                    log.write(chunk[: LOG_CAP_BYTES - self.total])
                    if self.total + len(chunk) >= LOG_CAP_BYTES:
                        log.write(b"\n[grading: log truncated here]\n")
                    log.flush()
                self.total += len(chunk)
                self.head += chunk[: max(0, _TAIL_BYTES - len(self.head))]
                self.tail.append(chunk)
                self.tail_size += len(chunk)
                while self.tail_size - len(self.tail[0]) >= _TAIL_BYTES:
                    self.tail_size -= len(self.tail.popleft())

    def text(self) -> str:
        """The output, whole if short, else its head, a `[...]` mark and its tail."""
        tail = b"".join(self.tail)
        rest = self.total - len(self.head)          # bytes after the head
        if rest <= len(tail):
            joined = bytes(self.head) + (tail[len(tail) - rest:] if rest > 0 else b"")
        else:
            joined = bytes(self.head) + b"\n[...]\n" + tail
        return joined.decode("utf-8", "replace")


def _kill_group(proc: Any) -> None:
    """Kill the topic's whole process tree (pytest and anything it started)."""
    try:
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        proc.kill()


def limiter(memory_bytes: int | None):
    """A preexec_fn for the child (POSIX): no core dumps; at most `memory_bytes` of address space (a forked
    child, grading.forkserver, calls it too)."""
    def limit() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    return limit


_LIVE: set[Any] = set()     # topics' processes running now (Popen or forkserver.Forked; several with run_topics' jobs)


def execute(cmd: list[str], root: Path, env: dict, log_path: Path, limit_s: float,
            memory_bytes: int | None = None, channel: Any = None, fork: bool = False):
    """Run `cmd` in a session of its own, cut at `limit_s` seconds; returns (exit_code, timed_out, seconds, output
    text). `channel` (grading.runner's records channel) hands its pipe's write end to the child. With `fork`, the
    pytest process is forked from grading.forkserver's warm server instead of started as a fresh interpreter."""
    proc: Any
    start = time.monotonic()
    try:
        if fork:
            from grading import forkserver
            proc = forkserver.start(cmd, root, env, memory_bytes, channel.write_fd if channel else None,
                                    RESULTS_ENV)
        else:
            group: dict[str, Any]
            if sys.platform == "win32":
                group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
            else:
                group = {"start_new_session": True, "preexec_fn": limiter(memory_bytes)}
            if channel is not None and channel.write_fd is not None:
                group["pass_fds"] = (channel.write_fd,)
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, **group)
    finally:
        if channel is not None:
            channel.child_started()
    pump = _LogPump(proc.stdout, log_path)
    pump.start()
    timed_out = False
    _LIVE.add(proc)
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:       # Ctrl-C: the topic runs in its own session and would not see it
        _kill_group(proc)
        raise
    finally:
        _LIVE.discard(proc)
    _kill_group(proc)           # the topic is over: nothing it started may go on writing or running
    proc.wait()
    pump.join(timeout=5)       # a grandchild that escaped the group may hold the pipe; don't wait on it
    return proc.returncode, timed_out, time.monotonic() - start, pump.text()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (`terminate_as_interrupt`)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"signal {signum} (SIGTERM)")


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within it, SIGTERM (`kill`, `timeout`, a CI step's or a device window's limit) stops a grading tool as
    Ctrl-C does: an exception in the main thread, whose handlers here kill the running topics' process groups.
    Without it a topic outlived its tool: it runs in a session of its own, which a signal to the tool does not
    reach, and went on (on a GPU, timing against the next call's processes) until its next write to the closed
    pipe. Outside the main thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kill_running_topics() -> None:
    """Kill the process group of every topic still running (after Ctrl-C or SIGTERM in a tool's thread)."""
    for proc in list(_LIVE):
        _kill_group(proc)


def run_cli(main, prog: str, lost: str = "the running topics' processes were stopped") -> int:
    """A grading tool's entry point: `main()` with SIGTERM taken as Ctrl-C; either one ends it with one line,
    "<prog>: interrupted; <lost>", not a traceback, after its topics' processes were killed: exit status 130
    (Ctrl-C) or 143 (SIGTERM)."""
    with terminate_as_interrupt():
        try:
            return main()
        except KeyboardInterrupt as stop:
            kill_running_topics()
            how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
            print(f"{prog}: {how}; {lost}", file=sys.stderr)
            return 143 if isinstance(stop, Terminated) else 130


def in_threads(fn, items: list, jobs: int) -> list:
    """`fn(item)` for every item, `jobs` at a time in threads; the results in the order of `items`. Ctrl-C and
    SIGTERM reach the calling thread only: the calls not begun are cancelled and the running topics' process
    groups killed, so that leaving the pool does not wait for each topic to end by itself."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, jobs)) as pool:      # threads only wait on the topics' processes
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            kill_running_topics()
            raise
