"""inf14 · Weight-only int8: int8 weights in memory, activations stay in 16 or 32 bits.

Decoding one token at a time multiplies a single activation row by every weight: each weight byte is
read once and used for two FLOPs, so the step's time is the time to read the weights. Storing them as
int8 halves the bytes of bf16 and so, at batch 1, can nearly halve the time, with no activation rounding
at all. The per-channel scale factors out of the sum over k, so it is applied once per output:

    y[m, n] = sum_k x[m, k] (wq[n, k] * w_scale[n]) = w_scale[n] * sum_k x[m, k] wq[n, k]

`int8_linear` is the PyTorch path (any batch, CPU and GPU) and the reference of `int8_linear_triton`, a
GEMV kernel for decode batches that reads each int8 weight once and never writes a float copy of it.
`Int8Linear` is the layer that a model's `replace_linears` puts in place of each `nn.Linear`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import nn

from lab.errors import NotStarted

from .quantize import quantize_per_channel

GEMV_MAX_TOKENS = 16   # Int8Linear sends up to this many tokens on CUDA to the GEMV kernel


def _check_args(x, wq, w_scale) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError(f"x must be a 2-D float tensor [M, K], got {getattr(x, 'dtype', type(x))} "
                         f"{list(getattr(x, 'shape', []))}")
    if wq.dtype != torch.int8 or wq.dim() != 2 or wq.shape[1] != x.shape[1] or w_scale.shape != (wq.shape[0],):
        raise ValueError(f"need wq [N, K={x.shape[1]}] int8 and w_scale [N]; got wq {wq.dtype} "
                         f"{list(wq.shape)} and w_scale {list(w_scale.shape)}")


def int8_linear(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """y = x @ (wq * w_scale[:, None]).T in PyTorch: x [M, K] float, wq [N, K] int8, w_scale [N] float32.

    Returns a new [M, N] tensor in x.dtype, computed in x.dtype (every int8 value is exact in bf16, fp16
    and fp32). Raises ValueError unless x is a 2-D float [M, K], wq [N, K] int8 and w_scale [N].
    Hints: README.md, "Hints".
    """
    _check_args(x, wq, w_scale)
    raise NotStarted("inf14: implement int8_linear")


@triton.jit
def int8_gemv_kernel(x_ptr, w_ptr, w_scale_ptr, out_ptr, N, K, stride_xm, stride_wn, stride_om,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One program computes out[m, BLOCK_N outputs] for one token m = program_id(0), n block = program_id(1).

    x: [M, K] float (row stride stride_xm); w: [N, K] int8 (row stride stride_wn); w_scale: [N] float32;
    out: [M, N] (row stride stride_om). Grid: (M, cdiv(N, BLOCK_N)). out[m, n] = w_scale[n] * sum_k
    x[m, k] * w[n, k], summed in float32 and stored in out's dtype; only n < N is written. Any N, K >= 1
    (not multiples of the blocks). It must stream the int8 weight once and never write a float copy of it.
    Hints: README.md, "Hints" (the kernel is bound by reading w: what keeps its loop doing only that).
    """
    raise NotStarted("inf14: implement int8_gemv_kernel")


# A GEMV is bound by reading w: each SM needs tens of KiB of loads in flight, so either many small
# programs (N / BLOCK_N of them: 512 for N = 4096 at BLOCK_N = 8) or wide tiles (BLOCK_K int8 = BLOCK_K
# bytes a row, 16-byte loads), as many as the registers allow.
GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bn, bk, w, s in [(4, 1024, 4, 1), (8, 512, 4, 1), (8, 1024, 4, 1), (8, 2048, 8, 1), (16, 1024, 8, 1),
                         (16, 512, 4, 1), (32, 256, 4, 1), (8, 1024, 4, 3), (16, 1024, 8, 3)]
]
int8_gemv_kernel_tuned = triton.autotune(GEMV_CONFIGS, key=["N", "K"])(int8_gemv_kernel)
INTERPRETER_TILE = {"BLOCK_N": 16, "BLOCK_K": 64}   # the Triton interpreter (CPU tests): one small tile


def int8_linear_triton(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """`int8_linear` as one launch of `int8_gemv_kernel` (same arguments, same result up to rounding).

    Meant for decode batches (M up to GEMV_MAX_TOKENS). Returns a new [M, N] tensor in x.dtype: on CUDA
    through `int8_gemv_kernel_tuned` (the autotuner picks BLOCK_N and BLOCK_K), on a CPU (the Triton
    interpreter) `int8_gemv_kernel` with the tile `INTERPRETER_TILE`. Accepts inputs that are not
    contiguous; raises int8_linear's ValueErrors. Hints: README.md, "Hints".
    """
    _check_args(x, wq, w_scale)
    raise NotStarted("inf14: implement int8_linear_triton")


class Int8Linear(nn.Module):
    """A linear layer with weight-only int8: what `model.replace_linears` swaps in for an `nn.Linear`.

    Stores exactly three things (as buffers): `weight_q` int8 [N, K], `weight_scale` float32 [N] and
    `bias` (float [N], or None): N*K + 4*N bytes (+ the bias), half of the fp16 weight's 2*N*K plus the
    scales. No float copy of the weight is kept.
    """

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight_q.shape
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        """A new Int8Linear holding `linear.weight` quantized per output channel (`quantize_per_channel`)
        and a copy of its bias (None if it has none), detached from autograd; `linear` is not modified."""
        raise NotStarted("inf14: implement Int8Linear.from_linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] (any number of leading dimensions) -> [..., N] in x.dtype, plus the bias if any:
        computed by `int8_linear_triton` when x is on CUDA and holds at most GEMV_MAX_TOKENS tokens in all,
        by `int8_linear` otherwise."""
        raise NotStarted("inf14: implement Int8Linear.forward")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"
