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

from lab.errors import NotStarted


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
    accumulator starts to round, and values of ±127), for every M, K, N >= 1, on a CPU and on CUDA, on
    the device of the inputs. Raises ValueError unless both are 2-D int8 with the same K.
    Hints: README.md, "Hints" (which int8 GEMM torch offers, and the shapes it refuses).
    """
    if xq.dtype != torch.int8 or wq.dtype != torch.int8 or xq.dim() != 2 or wq.dim() != 2 \
            or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"need xq [M, K] and wq [N, K], both int8; got {xq.dtype} {list(xq.shape)} and "
                         f"{wq.dtype} {list(wq.shape)}")
    raise NotStarted("inf14: implement int8_matmul")


def w8a8_matmul(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """y ≈ x @ w.T from int8 codes and their scales, in PyTorch (the reference for the Triton kernel).

    xq: [M, K] int8, x_scale: [M, 1] float32 (per token); wq: [N, K] int8, w_scale: [N] float32 (per
    output channel). Returns [M, N] in `out_dtype`: y[m, n] = int8_matmul(xq, wq)[m, n] in float32 times
    x_scale[m] times w_scale[n] (the epilogue, in float32), then cast once. x_scale may also be [M].
    Raises ValueError, naming the expected shapes, unless the four tensors fit together.
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    raise NotStarted("inf14: implement w8a8_matmul")


@triton.jit
def w8a8_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """One program computes the output tile out[BLOCK_M rows, BLOCK_N columns].

    x: [M, K] int8 (row stride stride_xm, columns contiguous); w: [N, K] int8 (row stride stride_wn);
    x_scale: [M] float32; w_scale: [N] float32; out: [M, N] (row stride stride_om), any float dtype.
    The 1-D grid has cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N) programs, each owning one tile; which program
    takes which tile is yours (GROUP_M is there for an order that keeps shared w tiles in L2).
    out[m, n] = x_scale[m] * w_scale[n] * (sum_k x[m, k] * w[n, k], exact in int32 on int8 tensor cores),
    the scaling in float32, cast to out's dtype; only entries inside [M, N] are written. Any M, N, K >= 1
    (not multiples of the blocks).
    Hints: README.md, "Hints".
    """
    raise NotStarted("inf14: implement w8a8_kernel")


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

    Returns a new [M, N] tensor in out_dtype, computed by one launch of `w8a8_kernel`: on a CUDA device
    through `w8a8_kernel_tuned` (the autotuner picks the tile sizes), on a CPU (the Triton interpreter)
    with the tile `INTERPRETER_TILE`. Accepts the inputs w8a8_matmul accepts (x_scale [M, 1] or [M],
    tensors that are not contiguous) and raises the same ValueErrors. Hints: README.md, "Hints".
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    raise NotStarted("inf14: implement w8a8_matmul_triton")
