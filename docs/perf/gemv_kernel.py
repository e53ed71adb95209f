"""A batch-1 matrix-vector product in Triton, y = W x, for measuring how close decode's GEMVs come to the
copy bandwidth on a given card (issue 10: lab.decode_bench reads 87% of it on an H100, 67% on an H200, where
gpt-fast reads 65.5%). `docs/perf/gemv_sweep.py` times it over its launch shapes beside cuBLAS and Inductor.
It lives here, out of the student release (docs/perf is left out of it): it is inf14's int8 GEMV kernel less
the int8 conversion. Its test, tests/test_gemv.py, is left out too.

Each program owns BLOCK_N rows of W and walks its share of K in BLOCK_K columns, multiplying in float32 and
summing once at the end; split_k > 1 gives each row block split_k programs over disjoint K ranges (more bytes in
flight for a short, wide matrix such as a 4096 x 4096 projection). Their partial sums meet one of two ways:
  reduce="atomic"  added atomically into a zeroed float32 vector, cast at the end: three launches (zeros, the
                   kernel, the cast), and the sum's order (so its last bits) varies from call to call;
  reduce="last"    each program stores its partial sums in a workspace and counts itself in on its row block's
                   counter; the program that arrives last adds the row block's partials in a fixed order, writes
                   the output and sets the counter back to 0: one launch, the same bits every call. The counters
                   (`counters`, int32 zeros, one per row block) persist between calls, zero again after each.
Three launches against one matter in a decode step under CUDA graphs: 32 layers x 2-3 split matrices x 2 extra
kernels is ~130-190 more kernels a step, each with its launch gap. `gemv_reference` is the definition in float64.
"""
from __future__ import annotations

import itertools
from typing import Callable

import torch
import triton
import triton.language as tl

# The launch grid docs/perf/gemv_sweep.py's quick mode and lab.decode_bench's lab-triton tune over. block_k was
# (256, 512) until session 15, when both H100 runs picked 512, the grid's edge, for all five shapes: 1024 is
# tried instead of 256, which no shape picked.
REDUCTIONS = ("last", "atomic")               # how a K split's partial sums meet (see gemv)
QUICK_GRID = dict(block_n=(4, 8, 16), block_k=(512, 1024), num_warps=(4, 8), num_stages=(1, 3), split_k=(1, 2, 4),
                  reduce=REDUCTIONS)
SPLIT_MAX_ROWS = 8192       # above it, thousands of row blocks already fill the card: no K split is tried


NO_PROLOGUE, RMS_NORM, SILU_MUL = 0, 1, 2     # what the kernel does to x before the product (see gemv)


@triton.jit
def _gemv_kernel(w_ptr, x_ptr, y_ptr, partial_ptr, count_ptr, g_ptr, res_ptr, N, K, stride_wn, K_PER_SPLIT, eps,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLITS: tl.constexpr, LAST: tl.constexpr,
                 PROLOGUE: tl.constexpr, RESIDUAL: tl.constexpr):
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_begin = pid_k * K_PER_SPLIT
    k_end = k_begin + K_PER_SPLIT
    squares = tl.zeros((BLOCK_K,), dtype=tl.float32)
    if PROLOGUE == 1 and SPLITS > 1:            # RMSNorm over a K split: the whole x's mean square first (in L2)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            v = tl.load(x_ptr + cols, mask=cols < K, other=0.0).to(tl.float32)
            squares += v * v
        scale = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / K + eps)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K_PER_SPLIT, BLOCK_K):
        cols = k_begin + k0 + tl.arange(0, BLOCK_K)
        in_k = (cols < K) & (cols < k_end)
        w = tl.load(w_ptr + rows[:, None] * stride_wn + cols[None, :],
                    mask=(rows[:, None] < N) & in_k[None, :], other=0.0)
        x = tl.load(x_ptr + cols, mask=in_k, other=0.0)
        # Products of two values of x's dtype are exact in float32 and rounded once, as torch rounds them (and
        # the interpreter has no bfloat16 arithmetic)
        if PROLOGUE == 1 and SPLITS == 1:       # RMSNorm in one pass: this program walks all of x anyway, so it
            g = tl.load(g_ptr + cols, mask=in_k, other=0.0)         # sums the squares here and scales the dot
            xf = x.to(tl.float32)                                   # product after (x * g unrounded: within two
            squares += xf * xf                                      # of x's roundings of lab.model's RMSNorm)
            x = xf * g.to(tl.float32)
        elif PROLOGUE == 1:                     # as lab.model.RMSNorm rounds: (x * scale) in x's dtype, times g
            g = tl.load(g_ptr + cols, mask=in_k, other=0.0)
            x = ((x.to(tl.float32) * scale).to(x.dtype).to(tl.float32) * g.to(tl.float32)).to(x.dtype)
        elif PROLOGUE == 2:                     # x holds gate then up (2K entries): silu(gate) * up, rounded as torch
            gate = x.to(tl.float32)
            up = tl.load(x_ptr + K + cols, mask=in_k, other=0.0)
            x = ((gate * tl.sigmoid(gate)).to(up.dtype).to(tl.float32) * up.to(tl.float32)).to(up.dtype)
        acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
    out = tl.sum(acc, axis=1)
    if PROLOGUE == 1 and SPLITS == 1:
        out = out / tl.sqrt(tl.sum(squares, axis=0) / K + eps)
    if SPLITS == 1:
        _gemv_finish(y_ptr, res_ptr, rows, out, N, RESIDUAL)
    elif LAST:
        tl.store(partial_ptr + pid_k * N + rows, out, mask=rows < N)
        tl.debug_barrier()                      # every thread's partial stored before the count (release below)
        arrived = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLITS - 1:               # the row block's last program: the others' partials are in
            total = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for split in tl.static_range(SPLITS):          # a fixed order: the same bits every call
                total += tl.load(partial_ptr + split * N + rows, mask=rows < N, other=0.0, cache_modifier=".cg")
            _gemv_finish(y_ptr, res_ptr, rows, total, N, RESIDUAL)
            tl.atomic_xchg(count_ptr + pid_n, 0, sem="relaxed", scope="gpu")     # ready for the next call
    else:
        tl.atomic_add(y_ptr + rows, out, mask=rows < N)


@triton.jit
def _gemv_finish(y_ptr, res_ptr, rows, out, N, RESIDUAL: tl.constexpr):
    """Store the rows' sums in y's dtype, plus the residual as `residual + (W x)` rounds in torch."""
    y = out.to(y_ptr.dtype.element_ty)
    if RESIDUAL:
        y = (y.to(tl.float32) + tl.load(res_ptr + rows, mask=rows < N, other=0.0).to(tl.float32)).to(y.dtype)
    tl.store(y_ptr + rows, y, mask=rows < N)


def counters_for(n: int, block_n: int, device) -> torch.Tensor:
    """The row-block counters reduce="last" needs: int32 zeros, one per row block, reusable across calls."""
    return torch.zeros(triton.cdiv(n, block_n), dtype=torch.int32, device=device)


def gemv(weight: torch.Tensor, x: torch.Tensor, *, block_n: int = 16, block_k: int = 512, split_k: int = 1,
         num_warps: int = 4, num_stages: int = 2, reduce: str = "last", counters: torch.Tensor | None = None,
         norm_weight: torch.Tensor | None = None, eps: float = 1e-5, silu_mul: bool = False,
         residual: torch.Tensor | None = None) -> torch.Tensor:
    """y = weight @ x for weight [N, K] (rows contiguous) and x [K]; y has x's dtype. block_n and block_k are
    powers of two; split_k >= 1 programs share each row block's K, their sums met as `reduce` says (see the
    module's docstring); `counters` (counters_for) are reduce="last"'s, made zero here when not given.

    Fused around the product, as a decode step's layer needs them (rounded as lab.model rounds, but for one):
    `norm_weight` [K]: x is RMS-normalised first (lab.model.RMSNorm with that weight and `eps`; without a K split
    in the same pass as the product, x * g unrounded and the scale applied to the sum: within two of x's
    roundings of lab.model's, with no loop over x before the weights stream); `silu_mul`: x is
    [2K], gate then up, and the product takes silu(gate) * up (lab.model.MLP); `residual` [N]: y = residual + W x."""
    if weight.dim() != 2 or x.dim() != 1 or x.shape[0] != weight.shape[1] * (2 if silu_mul else 1):
        raise ValueError(f"gemv needs weight [N, K] and x [{'2K' if silu_mul else 'K'}], got {list(weight.shape)} "
                         f"and {list(x.shape)}")
    if weight.stride(1) != 1:
        raise ValueError("gemv needs the weight's rows contiguous (stride 1 along K)")
    if split_k < 1 or block_n & (block_n - 1) or block_k & (block_k - 1):
        raise ValueError(f"split_k >= 1 and power-of-two blocks, got split_k={split_k}, block_n={block_n}, "
                         f"block_k={block_k}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    n, k = weight.shape
    if norm_weight is not None and (silu_mul or norm_weight.shape != (k,)):
        raise ValueError(f"norm_weight must be [K] = [{k}] (and not with silu_mul), got {list(norm_weight.shape)}")
    if residual is not None and residual.shape != (n,):
        raise ValueError(f"residual must be [N] = [{n}], got {list(residual.shape)}")
    k_per_split = triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, k_per_split))
    splits, last = grid[1], reduce == "last"
    partial = counts = x                                     # unused pointers when there is no split to meet
    if splits > 1 and last:
        if counters is None:
            counters = counters_for(n, block_n, x.device)
        if counters.dtype != torch.int32 or counters.numel() < grid[0]:
            raise ValueError(f"counters must be int32 with at least {grid[0]} entries (counters_for), got "
                             f"{counters.dtype} [{counters.numel()}]")
        partial, counts = torch.empty(splits * n, dtype=torch.float32, device=x.device), counters
    atomic = splits > 1 and not last
    y = torch.zeros(n, dtype=torch.float32, device=x.device) if atomic else torch.empty(n, dtype=x.dtype,
                                                                                        device=x.device)
    prologue = RMS_NORM if norm_weight is not None else SILU_MUL if silu_mul else NO_PROLOGUE
    _gemv_kernel[grid](weight, x, y, partial, counts, norm_weight if norm_weight is not None else x,
                       residual if residual is not None and not atomic else x, n, k, weight.stride(0), k_per_split,
                       eps, BLOCK_N=block_n, BLOCK_K=block_k, SPLITS=splits, LAST=last, PROLOGUE=prologue,
                       RESIDUAL=residual is not None and not atomic, num_warps=num_warps, num_stages=num_stages)
    if atomic:
        y = y.to(x.dtype)
        return y if residual is None else residual + y       # the atomic path's epilogue runs in torch
    return y


def gemv_reference(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The definition, in float64."""
    return weight.double() @ x.double()


def fused_reference(weight: torch.Tensor, x: torch.Tensor, norm_weight: torch.Tensor | None = None,
                    eps: float = 1e-5, silu_mul: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
    """What gemv's fused forms compute, by lab.model's own modules and F.linear in x's dtype: the rounding a
    decode step has without them."""
    import torch.nn.functional as F

    from lab.model import RMSNorm
    if norm_weight is not None:
        norm = RMSNorm(x.shape[0], eps).to(device=x.device, dtype=norm_weight.dtype)
        norm.weight.data.copy_(norm_weight)
        x = norm(x)
    if silu_mul:
        gate, up = x.chunk(2)
        x = F.silu(gate) * up
    y = F.linear(x, weight)
    return y if residual is None else residual + y


def configs(n: int, grid: dict = QUICK_GRID) -> list[dict]:
    """Every launch configuration of `grid` (gemv's keyword arguments, each named) worth timing for a matrix of
    N rows: a K split only up to SPLIT_MAX_ROWS rows, and without a split one `reduce` (there is nothing to meet)."""
    every = (dict(zip(grid, values)) for values in itertools.product(*grid.values()))
    return [c for c in every if (c["split_k"] == 1 and c["reduce"] == grid["reduce"][0])
            or (c["split_k"] > 1 and n <= SPLIT_MAX_ROWS)]


def label(config: dict) -> str:
    split = f"split{config['split_k']}" + (f" {config['reduce']}" if config["split_k"] > 1 else "")
    return f"n{config['block_n']} k{config['block_k']} w{config['num_warps']} s{config['num_stages']} {split}"


def time_configs(weight: torch.Tensor, x: torch.Tensor, candidates: list[dict],
                 say: Callable[[str], None] = lambda _: None) -> list[tuple[dict, float]]:
    """[(config, milliseconds)] fastest first, by `triton.testing.do_bench` (which flushes the L2 before every
    call), of each candidate whose output agrees with gemv_reference within bf16's rounding (and, reduce="last",
    leaves its counters at zero); a wrong one or one that fails to launch (out of resources) is left out, and
    `say` is told why."""
    from triton.testing import do_bench
    want = gemv_reference(weight, x)
    tol = 2 ** -6 * (want.abs() + (weight.double().abs() @ x.double().abs()) * 2 ** -8 + 1e-6)
    timed = []
    for config in candidates:
        counters = counters_for(weight.shape[0], config["block_n"], x.device)     # made once, as a layer does
        try:
            if ((gemv(weight, x, counters=counters, **config).double() - want).abs() > tol).any() or \
                    counters.any():
                say(f"{label(config)}: WRONG, left out")
                continue
            # 50 ms of runs (each after an L2 flush, ~100 us with it): hundreds of runs of a 10-300 us GEMV, and
            # ~0.1 s a configuration, so a 120-configuration grid tunes a shape in ~15 s plus its compiles
            timed.append((config, do_bench(lambda: gemv(weight, x, counters=counters, **config), warmup=10, rep=50)))
        except Exception as e:                  # out of resources and the like: say so, go on
            say(f"{label(config)}: failed: {type(e).__name__}: {str(e)[:120]}")
    return sorted(timed, key=lambda kv: kv[1])
