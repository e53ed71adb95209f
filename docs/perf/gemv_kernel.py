"""A batch-1 matrix-vector product in Triton, y = W x, for measuring how close decode's GEMVs come to the
copy bandwidth on a given card (issue 10: lab.decode_bench reads 87% of it on an H100, 67% on an H200, where
gpt-fast reads 65.5%). `docs/perf/gemv_sweep.py` times it over its launch shapes beside cuBLAS and Inductor.
It lives here, out of the student release (docs/perf is left out of it): it is inf14's int8 GEMV kernel less
the int8 conversion. Its test, tests/test_gemv.py, is left out too.

Each program owns BLOCK_N rows of W and walks its share of K in BLOCK_K columns, multiplying in float32 and
summing once at the end; SPLIT_K > 1 gives each row block SPLIT_K programs over disjoint K ranges (more bytes in
flight for a short, wide matrix such as a 4096 x 4096 projection) that add their partial sums atomically into a
float32 vector, cast at the end. `gemv_reference` is the definition in float64.
"""
from __future__ import annotations

import itertools
from typing import Callable

import torch
import triton
import triton.language as tl

# The launch grid docs/perf/gemv_sweep.py's quick mode and lab.decode_bench's lab-triton tune over.
QUICK_GRID = dict(block_n=(4, 8, 16), block_k=(256, 512), num_warps=(4, 8), num_stages=(1, 3), split_k=(1, 2, 4))
SPLIT_MAX_ROWS = 8192       # above it, thousands of row blocks already fill the card: no K split is tried


@triton.jit
def _gemv_kernel(w_ptr, x_ptr, y_ptr, N, K, stride_wn, K_PER_SPLIT,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ATOMIC: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_begin = tl.program_id(1) * K_PER_SPLIT
    k_end = k_begin + K_PER_SPLIT
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K_PER_SPLIT, BLOCK_K):
        cols = k_begin + k0 + tl.arange(0, BLOCK_K)
        in_k = (cols < K) & (cols < k_end)
        w = tl.load(w_ptr + rows[:, None] * stride_wn + cols[None, :],
                    mask=(rows[:, None] < N) & in_k[None, :], other=0.0)
        x = tl.load(x_ptr + cols, mask=in_k, other=0.0)
        acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
    out = tl.sum(acc, axis=1)
    if ATOMIC:
        tl.atomic_add(y_ptr + rows, out, mask=rows < N)
    else:
        tl.store(y_ptr + rows, out.to(y_ptr.dtype.element_ty), mask=rows < N)


def gemv(weight: torch.Tensor, x: torch.Tensor, *, block_n: int = 16, block_k: int = 512, split_k: int = 1,
         num_warps: int = 4, num_stages: int = 2) -> torch.Tensor:
    """y = weight @ x for weight [N, K] (rows contiguous) and x [K]; y has x's dtype. block_n and block_k are
    powers of two; split_k >= 1 programs share each row block's K (their sums meet in a float32 vector)."""
    if weight.dim() != 2 or x.dim() != 1 or weight.shape[1] != x.shape[0]:
        raise ValueError(f"gemv needs weight [N, K] and x [K], got {list(weight.shape)} and {list(x.shape)}")
    if weight.stride(1) != 1:
        raise ValueError("gemv needs the weight's rows contiguous (stride 1 along K)")
    if split_k < 1 or block_n & (block_n - 1) or block_k & (block_k - 1):
        raise ValueError(f"split_k >= 1 and power-of-two blocks, got split_k={split_k}, block_n={block_n}, "
                         f"block_k={block_k}")
    n, k = weight.shape
    k_per_split = triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, k_per_split))
    y = torch.zeros(n, dtype=torch.float32, device=x.device) if grid[1] > 1 else torch.empty(n, dtype=x.dtype,
                                                                                             device=x.device)
    _gemv_kernel[grid](weight, x, y, n, k, weight.stride(0), k_per_split, BLOCK_N=block_n, BLOCK_K=block_k,
                       ATOMIC=grid[1] > 1, num_warps=num_warps, num_stages=num_stages)
    return y.to(x.dtype) if grid[1] > 1 else y


def gemv_reference(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The definition, in float64."""
    return weight.double() @ x.double()


def configs(n: int, grid: dict = QUICK_GRID) -> list[dict]:
    """Every launch configuration of `grid` (gemv's keyword arguments) worth timing for a matrix of N rows."""
    every = (dict(zip(grid, values)) for values in itertools.product(*grid.values()))
    return [c for c in every if c["split_k"] == 1 or n <= SPLIT_MAX_ROWS]


def label(config: dict) -> str:
    return (f"n{config['block_n']} k{config['block_k']} w{config['num_warps']} s{config['num_stages']} "
            f"split{config['split_k']}")


def time_configs(weight: torch.Tensor, x: torch.Tensor, candidates: list[dict],
                 say: Callable[[str], None] = lambda _: None) -> list[tuple[dict, float]]:
    """[(config, milliseconds)] fastest first, by `triton.testing.do_bench` (which flushes the L2 before every
    call), of each candidate whose output agrees with gemv_reference within bf16's rounding; a wrong one or one
    that fails to launch (out of resources) is left out, and `say` is told why."""
    from triton.testing import do_bench
    want = gemv_reference(weight, x)
    tol = 2 ** -6 * (want.abs() + (weight.double().abs() @ x.double().abs()) * 2 ** -8 + 1e-6)
    timed = []
    for config in candidates:
        try:
            if ((gemv(weight, x, **config).double() - want).abs() > tol).any():
                say(f"{label(config)}: WRONG, left out")
                continue
            timed.append((config, do_bench(lambda: gemv(weight, x, **config))))
        except Exception as e:                  # out of resources and the like: say so, go on
            say(f"{label(config)}: failed: {type(e).__name__}: {str(e)[:120]}")
    return sorted(timed, key=lambda kv: kv[1])
