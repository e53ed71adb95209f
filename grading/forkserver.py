"""Topic processes forked from a warm server: for an instructors' tool only (gpu_check, unless `--fresh`).

A calibration starts some ninety pytest processes (three per implementation and topic), and each spent its
first second or two importing torch and pytest before its tests began (measured on the lab's 2-core CPU:
inf30's speed-test collection took 1.66 s in a fresh interpreter, 0.63 s forked). Here a server process
(multiprocessing's "forkserver": a fresh interpreter of its own) imports those once; each topic run is a
fork of it that then does what `python -m pytest ...` does: its own session and process group, the topic's
environment, working directory, import path, argv, stdout/stderr pipe and records channel, and
`pytest.console_main()`; its exit status is pytest's.

What a fork does not change: the tests run in a process of their own, one at a time, after the same
warm-up; nothing of the device is shared (the server never touches CUDA, so each child starts its own
context, as a fresh interpreter does); Triton's and torch.compile's in-memory caches start empty. Only
third-party modules are preloaded: the lab's, the grader's and the topic's own modules are imported in the
child, from the child's import path, as before. What a preloaded library reads from the environment at its
import it read once, in the server (numpy's OpenBLAS sizes its thread pool then, and shuts it down around each
fork): so the server serves one tool's processes, whose environments differ only in the lab's own variables
(LAB_IMPL, LAB_SPEED_REPEAT, the records channel), which are read when the tests run.

The grader itself never uses it: a submission's topics run in fresh interpreters (and sandboxes,
grading.isolate), since a student's code must not meet a process that has run anything before it.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys
import threading
import types
from multiprocessing import reduction
from pathlib import Path
from typing import Any

# Not pytest's plugins (pytest_benchmark, pytest_timeout): pytest rewrites a plugin's asserts as it imports
# it, and warns where it finds one imported already. grading.fork_safe first: no preload may start the CUDA
# driver in the server. torch._dynamo (inf13's tests import it): on the lab's 2-core CPU a forked inf13 speed
# process's collection took 3.0-3.3 s without it and 1.4-1.6 s with it, the server's start 1.5 s more, once
# per gpu_check. transformers' RoPE tables and Llama config (lab.model computes Llama-3's RoPE through them: every
# model of the llama-3.2-1b shape, which most GPU speed tests build): a forked process built its first such
# model (on `meta`) in 0.85-1.00 s without them on the lab's CPU, ~1,300 modules imported on the way.
PRELOAD = ("grading.fork_safe", "torch", "numpy", "pytest", "_pytest.python", "_pytest.fixtures", "triton",
           "triton.language", "torch._dynamo", "transformers.modeling_rope_utils",
           "transformers.models.llama.configuration_llama")
_context: Any = None
_START_LOCK = threading.Lock()           # gpu_check's correctness step starts topics from threads


def available() -> bool:
    """Where a fork server can run: POSIX with multiprocessing's forkserver start method."""
    return os.name == "posix" and "forkserver" in multiprocessing.get_all_start_methods()


def _server():
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([name for name in PRELOAD if _importable(name)])
        _context = context
    return _context


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class Forked:
    """A forked topic process, with the parts of subprocess.Popen that grading.processes uses."""

    def __init__(self, process, stdout):
        self.process, self.stdout = process, stdout
        self.pid: int = process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(["pytest (forked)"], timeout or 0.0)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()


def start(cmd: list[str], cwd: Path, env: dict[str, str], memory_bytes: int | None,
          channel_fd: int | None, channel_env: str) -> Forked:
    """Fork `cmd` (`[python, "-m", "pytest", *args]`) from the server, with stdout and stderr on a new pipe
    (`Forked.stdout`) and the records channel's write end `channel_fd` (named to the child in `channel_env`)."""
    if cmd[1:3] != ["-m", "pytest"]:
        raise ValueError(f"the fork server runs pytest only, not {cmd[:3]}")
    read_end, write_end = os.pipe()
    try:
        # Not a daemon: a daemonic process may not start processes of its own, as some tests do.
        process = _server().Process(target=_child, name="pytest", daemon=False, args=(
            cmd[3:], str(cwd), dict(env), _Fd(write_end), _Fd(channel_fd) if channel_fd is not None else None,
            channel_env, memory_bytes))
        # multiprocessing re-imports the caller's __main__ in the child (its "safe importing of main module"
        # rule); the topic needs none of it, so the child is shown a bare one while it starts.
        with _START_LOCK:
            caller = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                process.start()
            finally:
                sys.modules["__main__"] = caller
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)             # only the child holds the write end now
    return Forked(process, open(read_end, "rb"))


class _Fd:
    """A descriptor for the child. Pickled inside Process.start() (multiprocessing's spawning context), it
    travels with the child's start over the server's socket (SCM_RIGHTS) and arrives as a descriptor number."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _inherited_fd, (reduction.DupFd(self.fd),)


def _inherited_fd(dup) -> int:
    return dup.detach()


def _child(args: list[str], cwd: str, env: dict[str, str], stdout_fd: int, channel_fd: int | None, channel_env: str,
           memory_bytes: int | None) -> None:
    """In the fork: become what `cd cwd && env ... python -m pytest args` would be, run pytest, exit with its status."""
    from grading.processes import limiter
    os.setsid()                                     # the topic's own group: the runner kills it whole
    limiter(memory_bytes)()                         # as a fresh interpreter's preexec_fn: no cores, the memory limit
    os.dup2(stdout_fd, 1)
    os.dup2(stdout_fd, 2)
    os.close(stdout_fd)
    if channel_fd is not None:
        env = {**env, channel_env: f"fd:{channel_fd}"}
    inherited = {p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p} | {"", os.getcwd()}
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [cwd, *paths, *(p for p in sys.path if p not in inherited and p not in paths and p != cwd)]
    sys.argv = ["pytest", *args]
    sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
    sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
    import pytest
    # SystemExit, not os._exit: multiprocessing's bootstrap then exits with pytest's status after running the
    # finalizers a normal exit runs (a multiprocessing queue a test made unregisters its semaphore there).
    raise SystemExit(int(pytest.console_main()))
