"""Run a Triton kernel's check on a CPU, through the Triton interpreter, in a fresh Python process.

`TRITON_INTERPRET=1` makes `@triton.jit` kernels run as numpy code on the CPU, but Triton reads it when it
is first imported, so a test process that has already imported triton cannot switch. A test therefore
asks this module to run one of its own functions in a child process that sets the variable first:

    def check_my_kernel(seed: int) -> None:       # module level in the test file; raises AssertionError
        ...

    def test_my_kernel(seed):
        run_in_interpreter(__file__, "check_my_kernel", seed)     # or lab.testing.kernel_check(check_my_kernel, seed)

The child imports the test file by path, calls `check_my_kernel(seed)` and exits, writing what happened to a
small JSON file the parent names (`{"kind": "passed" | "not_started" | "failed", "type", "message"}`); the
parent turns a failure into a test failure with the child's message and last lines, and the stub's
`lab.errors.NotStarted` into a NotStarted again (so an unstarted kernel reads as "not started", by type). The
child sees the same implementation (LAB_IMPL) as the tests and is held to the same rules: `import solutions`
fails unless the parent allows it (lab.impl), and the running test's bans (its topic.toml's, passed on in
LAB_GUARD) apply, a swallowed violation included.

    python -m lab.triton_interpreter path/to/test_file.py check_my_kernel 1234 RESULT.json   # the child's command
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.errors import NotStarted, not_started_in
from lab.paths import REPO_ROOT

TIMEOUT_S = 300


def run_in_interpreter(test_file: str, function: str, seed: int, timeout_s: float = TIMEOUT_S) -> None:
    """Run `function(seed)` of `test_file` under TRITON_INTERPRET=1 in a child process; raise on failure."""
    import pytest

    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="lab-interpreter-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "lab.triton_interpreter", str(test_file), function, str(seed), str(result_path)]
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{function} under the Triton interpreter took over {timeout_s:.0f} s (an endless loop in "
                        "the kernel, or shapes far larger than a CPU check needs)")
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = {"kind": "failed", "type": None, "message": None}      # the child died before writing it
    if proc.returncode == 0 and result.get("kind") == "passed":
        return
    if result.get("kind") == "not_started":
        raise NotStarted(result.get("message") or f"{function}: a stub raised NotStarted")
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    last = f"{result['type']}: {result['message']}" if result.get("type") else \
        lines[-1] if lines else f"exit status {proc.returncode}, no output"
    pytest.fail(f"{last}\n(under the Triton interpreter, TRITON_INTERPRET=1; the child's last lines:)\n"
                + "\n".join(lines[-12:]), pytrace=False)


def _fix_bfloat16_dot() -> None:
    """Make the interpreter's `tl.dot` multiply bfloat16 tiles as numbers (Triton 3.6 multiplies their raw
    uint16 bits): widen them to float32 first, exactly, as a GPU's tensor cores do."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    create_dot = interpreter.InterpreterBuilder.create_dot
    if getattr(create_dot, "_lab_bf16", False):
        return

    def widen(handle):
        if handle.dtype == tl.bfloat16:
            bits = handle.data.view(np.uint16).astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), tl.float32)
        return handle

    def fixed(self, a, b, d, input_precision, max_num_imprecise_acc):
        return create_dot(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    setattr(fixed, "_lab_bf16", True)                      # patched once per process (checked above)
    interpreter.InterpreterBuilder.create_dot = fixed


def _report(path: str | None, kind: str, error: BaseException | None = None) -> None:
    if path:
        message = None if error is None else str(error)[:4000]
        Path(path).write_text(json.dumps({"kind": kind, "type": type(error).__name__ if error else None,
                                          "message": message}))


def _main(argv: list[str]) -> int:
    test_file, function, seed = argv[0], argv[1], int(argv[2])
    result_path = argv[3] if len(argv) > 3 else None
    try:
        _run_check(test_file, function, seed)
    except BaseException as error:
        stub = not_started_in(error)
        _report(result_path, "not_started" if stub is not None else "failed", stub or error)
        raise
    _report(result_path, "passed")
    return 0


def _run_check(test_file: str, function: str, seed: int) -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("run this through run_in_interpreter, which sets TRITON_INTERPRET=1 first")
    _fix_bfloat16_dot()
    from lab.impl import block_solutions, solutions_allowed
    if not solutions_allowed():         # as conftest.py decides for the parent: only the reference may
        block_solutions()               # import solutions
    from grading.guard import runtime
    runtime.install_from_env()          # the bans of the test that started this child
    try:
        spec = importlib.util.spec_from_file_location(f"_interpreted_{Path(test_file).stem}", test_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the test file {test_file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        getattr(module, function)(seed)
    finally:                            # as the guard's plugin does: a violation the code swallowed still fails
        runtime.check_child()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
