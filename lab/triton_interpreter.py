"""Run a Triton kernel's check on a CPU, through the Triton interpreter, in a fresh Python process.

`TRITON_INTERPRET=1` makes `@triton.jit` kernels run as numpy code on the CPU, but Triton reads it when it
is first imported, so a test process that has already imported triton cannot switch. A test therefore
asks this module to run one of its own functions in a child process that sets the variable first:

    def check_my_kernel(seed: int) -> None:       # module level in the test file; raises AssertionError
        ...

    def test_my_kernel(seed):
        run_in_interpreter(__file__, "check_my_kernel", seed)

The child imports the test file by path, calls `check_my_kernel(seed)` and exits; the parent turns a
failure into a test failure with the child's message, and a stub's NotImplementedError into one too (so
an unstarted kernel reads as "not started"). The child sees the same implementation (LAB_IMPL) as the tests
and is held to the same rules: `import solutions` fails unless the parent allows it (lab.impl), and the
running test's bans (its topic.toml's, passed on in LAB_GUARD) apply, a swallowed violation included.

    python -m lab.triton_interpreter path/to/test_file.py check_my_kernel 1234     # the child's command
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from lab.paths import REPO_ROOT

TIMEOUT_S = 300


def run_in_interpreter(test_file: str, function: str, seed: int, timeout_s: float = TIMEOUT_S) -> None:
    """Run `function(seed)` of `test_file` under TRITON_INTERPRET=1 in a child process; raise on failure."""
    import pytest

    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "lab.triton_interpreter", str(test_file), function, str(seed)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{function} under the Triton interpreter took over {timeout_s:.0f} s (an endless loop in "
                    "the kernel, or shapes far larger than a CPU check needs)")
    if proc.returncode == 0:
        return
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    stub = next((line for line in reversed(lines) if "NotImplementedError" in line), None)
    if stub is not None:
        raise NotImplementedError(stub.split("NotImplementedError:", 1)[-1].strip() or stub)
    last = lines[-1] if lines else f"exit status {proc.returncode}, no output"
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

    fixed._lab_bf16 = True
    interpreter.InterpreterBuilder.create_dot = fixed


def _main(argv: list[str]) -> int:
    test_file, function, seed = argv[0], argv[1], int(argv[2])
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("run this through run_in_interpreter, which sets TRITON_INTERPRET=1 first")
    _fix_bfloat16_dot()
    from lab.impl import block_solutions, solutions_allowed
    if not solutions_allowed():         # as conftest.py decides for the parent: only the reference and the
        block_solutions()               # planted versions may import solutions
    from grading.guard import runtime
    runtime.install_from_env()          # the bans of the test that started this child
    try:
        spec = importlib.util.spec_from_file_location(f"_interpreted_{Path(test_file).stem}", test_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        getattr(module, function)(seed)
    finally:                            # as the guard's plugin does: a violation the code swallowed still fails
        runtime.check_child()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
