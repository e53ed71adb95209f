"""inf14 · The W8A8 matmul: int8 activations times int8 weights, accumulated in int32, scaled in the epilogue.

With activations quantized per token (x ≈ xq * x_scale[m]) and weights per output channel
(w ≈ wq * w_scale[n]), both scales factor out of the dot product over k:

    y[m, n] = sum_k x[m, k] w[n, k] ≈ x_scale[m] * w_scale[n] * sum_k xq[m, k] wq[n, k]

so the whole inner loop runs on int8 tensor cores (twice the bf16 rate on an H100/H200) and the floats
come back only once per output, in the epilogue. The sum must be exact: each product is at most
128² = 2^14, so K of them need 14 + log2(K) bits. int32 holds K up to 131,072; float32 (24-bit mantissa)
is exact only to K ≈ 1,040 at full scale; float16 overflows after five products.

Two implementations with one signature: `w8a8_matmul` in PyTorch (the CPU path and the reference) and
`w8a8_matmul_triton`, a Triton kernel (`tl.dot` on int8 with an int32 accumulator) for the GPU; on a CPU
the kernel runs in the Triton interpreter (TRITON_INTERPRET=1), which is how the tests check it there.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def _check_w8a8_args(xq, x_scale, wq, w_scale) -> None:
    """ValueError with the expected shapes and dtypes unless the four tensors fit together."""
    if not all(isinstance(t, torch.Tensor) for t in (xq, x_scale, wq, w_scale)):
        raise ValueError("xq, x_scale, wq and w_scale must all be tensors")
    if xq.dtype != torch.int8 or wq.dtype != torch.int8 or xq.dim() != 2 or wq.dim() != 2:
        raise ValueError(f"xq [M, K] and wq [N, K] must be 2-D int8 tensors, got {xq.dtype} {list(xq.shape)} "
                         f"and {wq.dtype} {list(wq.shape)}")
    (m, k), (n, k2) = xq.shape, wq.shape
    if k != k2:
        raise ValueError(f"xq is [M={m}, K={k}] but wq is [N={n}, K={k2}]: the inner sizes must match")
    if x_scale.shape not in ((m, 1), (m,)) or w_scale.shape != (n,):
        raise ValueError(f"x_scale must be [M, 1] = [{m}, 1] and w_scale [N] = [{n}], got "
                         f"{list(x_scale.shape)} and {list(w_scale.shape)}")


def int8_matmul(xq: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """The exact int32 products xq @ wq.T: xq [M, K] int8, wq [N, K] int8 -> [M, N] int32.

    Every entry must equal the true integer sum of K int8 products (tests use K past 1,040, where a float32
    accumulator starts to round, and values of ±127).
    Hint: `torch._int_mm(a, b)` is torch's int8 GEMM (int8 [M, K] x int8 [K, N] -> int32) and runs on any
    CPU shape; on CUDA it refuses M <= 16 and K or N not multiples of 8, where float64 (53-bit mantissa)
    still holds every such sum exactly.
    """
    if xq.dtype != torch.int8 or wq.dtype != torch.int8 or xq.dim() != 2 or wq.dim() != 2 \
            or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"need xq [M, K] and wq [N, K], both int8; got {xq.dtype} {list(xq.shape)} and "
                         f"{wq.dtype} {list(wq.shape)}")
    # BEGIN SOLUTION
    if xq.device.type == "cpu":
        return torch._int_mm(xq.contiguous(), wq.t())            # oneDNN int8 GEMM, int32 accumulation (VNNI)
    m, k, n = xq.shape[0], xq.shape[1], wq.shape[0]
    if m > 16 and k % 8 == 0 and n % 8 == 0:
        return torch._int_mm(xq.contiguous(), wq.t())
    return (xq.double() @ wq.double().t()).to(torch.int32)        # exact: |sum| < 2^31 << 2^53
    # END SOLUTION


def w8a8_matmul(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """y ≈ x @ w.T from int8 codes and their scales, in PyTorch (the reference for the Triton kernel).

    xq: [M, K] int8, x_scale: [M, 1] float32 (per token); wq: [N, K] int8, w_scale: [N] float32 (per
    output channel). Returns [M, N] in `out_dtype`: int8_matmul(xq, wq) converted to float32, times
    x_scale and w_scale (the epilogue, in float32), then cast once.
    Hint: broadcasting does the epilogue: acc [M, N] * x_scale [M, 1] * w_scale [N].
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    # BEGIN SOLUTION
    acc = int8_matmul(xq, wq)
    return (acc.float() * x_scale.float().reshape(-1, 1) * w_scale.float()).to(out_dtype)
    # END SOLUTION


@triton.jit
def w8a8_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """One program computes the output tile out[BLOCK_M rows, BLOCK_N columns].

    x: [M, K] int8 (row stride stride_xm, columns contiguous); w: [N, K] int8 (row stride stride_wn);
    x_scale: [M] float32; w_scale: [N] float32; out: [M, N] (row stride stride_om), any float dtype.
    The 1-D grid has cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N) programs; consecutive programs walk GROUP_M
    row-tiles down one column of tiles before moving right, so the w tiles they share stay in L2.
    Loop over K in steps of BLOCK_K: load an x tile [BLOCK_M, BLOCK_K] and a w tile seen as
    [BLOCK_K, BLOCK_N] (w transposed, by pointer arithmetic), masked past K with 0, and accumulate
    `tl.dot(x, w, acc, out_dtype=tl.int32)` into an int32 [BLOCK_M, BLOCK_N] accumulator. Epilogue:
    acc to float32, times x_scale (rows) and w_scale (columns), cast to out's dtype, masked store.
    Hint: Triton's matmul tutorial (03-matrix-multiplication.py) is this kernel in fp16.
    """
    # BEGIN SOLUTION
    pid = tl.program_id(0)
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tiles_per_group = GROUP_M * num_pid_n
    first_m = (pid // tiles_per_group) * GROUP_M
    group_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % tiles_per_group) % group_m
    pid_n = (pid % tiles_per_group) // group_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    # Rows and columns past the edge wrap around (% M, % N) instead of being masked: the loads stay
    # unmasked in M and N, and the store below drops those duplicates.
    x_ptrs = x_ptr + (rows % M)[:, None] * stride_xm + ks[None, :]            # [BLOCK_M, BLOCK_K]
    w_ptrs = w_ptr + (cols % N)[None, :] * stride_wn + ks[:, None]            # [BLOCK_K, BLOCK_N] = w.T tile
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=ks[None, :] < k_left, other=0)
        w = tl.load(w_ptrs, mask=ks[:, None] < k_left, other=0)
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)                          # int8 x int8 -> int32
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K

    x_scale = tl.load(x_scale_ptr + rows, mask=rows < M, other=0.0)
    w_scale = tl.load(w_scale_ptr + cols, mask=cols < N, other=0.0)
    out = acc.to(tl.float32) * x_scale[:, None] * w_scale[None, :]
    out_ptrs = out_ptr + rows[:, None] * stride_om + cols[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
    # END SOLUTION


# Tiles for an H100/H200, tried once per shape by the autotuner on the first call. int8 tensor cores
# want BLOCK_K >= 32; a 128 x 256 x 128 tile stages (128 + 256) * 128 B = 48 KiB of operands per pipeline
# stage, so 3-4 stages fit in shared memory.
W8A8_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=3, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=3, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=4),
]
w8a8_kernel_tuned = triton.autotune(W8A8_CONFIGS, key=["M", "N", "K"])(w8a8_kernel)
# The Triton interpreter (TRITON_INTERPRET=1: tests on a CPU) runs one small tile and no autotuning.
INTERPRETER_TILE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 2}


def w8a8_matmul_triton(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                       out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """`w8a8_matmul` as one Triton kernel launch (same arguments, same result up to out_dtype rounding).

    Allocate out [M, N] in out_dtype, then launch `w8a8_kernel`: on a CUDA device through
    `w8a8_kernel_tuned` (it picks the tile sizes), with grid
    `lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)`; on a CPU
    (the interpreter) directly with `**INTERPRETER_TILE`. The kernel reads x_scale as [M] and assumes
    unit stride along K: pass contiguous tensors.
    Hint: `kernel[grid](xq, x_scale, wq, w_scale, out, M, N, K, xq.stride(0), wq.stride(0), out.stride(0))`.
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    # BEGIN SOLUTION
    xq, wq = xq.contiguous(), wq.contiguous()
    x_scale, w_scale = x_scale.float().reshape(-1).contiguous(), w_scale.float().contiguous()
    (m, k), n = xq.shape, wq.shape[0]
    out = torch.empty(m, n, device=xq.device, dtype=out_dtype)
    args = (xq, x_scale, wq, w_scale, out, m, n, k, xq.stride(0), wq.stride(0), out.stride(0))
    if xq.is_cuda:
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        w8a8_kernel_tuned[grid](*args)
    else:
        tile = INTERPRETER_TILE
        w8a8_kernel[(triton.cdiv(m, tile["BLOCK_M"]) * triton.cdiv(n, tile["BLOCK_N"]),)](*args, **tile)
    return out
    # END SOLUTION
