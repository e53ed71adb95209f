"""docs/perf/gemv_kernel.py (the Triton GEMV that docs/perf/gemv_sweep.py times on a GPU) against its float64
definition, on this CPU through the Triton interpreter: odd sizes, every masking path (rows and columns past the
matrix, K split into ranges that end mid-block), fresh random inputs per seed. Left out of the student release
with the kernel (grading/tools/release.py)."""
import importlib.util

import pytest
import torch

from lab.paths import REPO_ROOT
from lab.triton_interpreter import run_in_interpreter


def gemv_module():
    spec = importlib.util.spec_from_file_location("gemv_kernel", REPO_ROOT / "docs" / "perf" / "gemv_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CONFIGS = [dict(block_n=4, block_k=16, split_k=1), dict(block_n=8, block_k=32, split_k=3),
           dict(block_n=2, block_k=64, split_k=2), dict(block_n=16, block_k=16, split_k=5)]


def check_gemv(seed: int) -> None:
    gemv, gemv_reference = gemv_module().gemv, gemv_module().gemv_reference
    gen = torch.Generator().manual_seed(seed)
    for config in CONFIGS:
        for dtype in (torch.float32, torch.bfloat16):
            n, k = (int(v) for v in torch.randint(5, 90, (2,), generator=gen))
            weight = torch.randn(n, k, generator=gen).to(dtype)
            x = torch.randn(k, generator=gen).to(dtype)
            got = gemv(weight, x, **config)
            want = gemv_reference(weight, x)
            scale = (weight.double().abs() @ x.double().abs())
            tol = (2 ** -7 if dtype == torch.bfloat16 else 1e-5) * (want.abs() + scale * 2 ** -8 + 1e-6)
            assert got.dtype == dtype and got.shape == (n,), (got.dtype, got.shape)
            bad = ((got.double() - want).abs() > tol).nonzero().flatten().tolist()
            assert not bad, (f"{config} {dtype} N={n} K={k}: rows {bad[:5]} differ, got {got[bad[:3]].tolist()} "
                             f"want {want[bad[:3]].tolist()}")


def test_gemv_matches_float64_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_gemv", seed)


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(3, 4), torch.zeros(5)), "weight [N, K] and x [K]"),
    ((torch.zeros(4, 3).t(), torch.zeros(4)), "rows contiguous"),
])
def test_gemv_refuses_what_it_cannot_compute(args, message):
    gemv = gemv_module().gemv
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gemv(*args)
