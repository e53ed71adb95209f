"""inf20 · The FlashAttention forward pass as one Triton kernel: online softmax with the tile in SRAM.

One program owns BLOCK_M query rows of one (batch, head). It loads its Q tile once, then streams K and V
in tiles of BLOCK_N rows through on-chip memory, folding each into the running max m, sum l and output
acc of online_softmax.py, all in registers. HBM sees Q, K, V read and O written (plus one float32 per
row, the log-sum-exp), never a [q_len, kv_len] matrix of scores. What makes it fast on an H100/H200:
- the two matmuls per tile (Q K^T and P V) run on tensor cores (`tl.dot`, fp16/bf16 in, float32 out);
- causal: tiles wholly above the diagonal are never loaded, and only the diagonal tiles pay for a mask;
- exp2 instead of exp, with 1/sqrt(head_dim) * log2(e) folded into one multiply of the scores;
- tile sizes picked by the autotuner among a few configs per head dim (larger tiles for head dim 64).

`flash_attention_reference` is the same computation in plain PyTorch with the same signature.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from lab.errors import NotStarted

from .online_softmax import check_attention_args

HEAD_DIMS = (16, 32, 64, 128)
LOG2_E = 1.4426950408889634


def check_flash_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """check_attention_args plus the kernel's limits: fp16 or bf16, head_dim one of HEAD_DIMS."""
    check_attention_args(q, k, v, causal)
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"flash_attention takes float16 or bfloat16 (tensor cores), got {q.dtype}")
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {q.shape[3]}")


def flash_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """What flash_attention computes, in plain PyTorch (float32 math, the whole score matrix at once).

    Same contract as flash_attention: q: [batch, num_heads, q_len, head_dim], k, v: [batch, num_heads,
    kv_len, head_dim], float16 or bfloat16, head_dim in HEAD_DIMS; causal aligned bottom-right (query i
    sees keys j <= i + kv_len - q_len; needs q_len <= kv_len). Returns (out in q's dtype, lse
    [batch, num_heads, q_len] float32, natural log). ValueError as check_flash_args.
    """
    check_flash_args(q, k, v, causal)
    raise NotStarted("inf20: implement flash_attention_reference")


@triton.jit
def flash_attention_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
                           stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                           stride_vb, stride_vh, stride_vt, stride_ob, stride_oh, stride_ot,
                           num_heads, q_len, kv_len, qk_scale,
                           HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: out and lse of BLOCK_M query rows of one (batch, head).

    Grid (cdiv(q_len, BLOCK_M), batch * num_heads): each program owns one tile of BLOCK_M query rows (which
    tile for which program id 0 is yours to choose) of head bh % num_heads in batch bh // num_heads, bh
    being program id 1. q, k, v, o: [batch, num_heads, len, HEAD_DIM] with the given strides (unit stride
    along HEAD_DIM); lse: contiguous float32 [batch, num_heads, q_len].
    qk_scale = log2(e) / sqrt(HEAD_DIM): q.k times qk_scale is a score in base 2, so exp2 replaces exp.
    Causal (IS_CAUSAL): row i sees key j iff j <= i + kv_len - q_len. Rows past q_len are neither read
    nor stored, keys past kv_len must not count, and tiles no row may see should not be loaded at all.
    Writes o [rows, :] in o's dtype and lse [rows] in natural log (not base 2), nothing else.
    The lesson's hints for the kernel cover the mask-free loop, exp2 and K^T by pointer arithmetic.
    """
    raise NotStarted("inf20: implement flash_attention_kernel")


# Tiles for an H100/H200 as (BLOCK_M, BLOCK_N, num_warps, num_stages), a few per head dim; the autotuner
# times those of the call's head dim once per (q_len, kv_len, head_dim, causal). A 128 x 128 tile of
# scores is 64 KiB of float32 registers across 8 warps; head dim 64 leaves room for deeper pipelines.
FLASH_TILES = {
    16: [(128, 64, 4, 3), (64, 64, 4, 3)],
    32: [(128, 64, 4, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
    64: [(128, 64, 4, 3), (128, 128, 8, 3), (128, 64, 4, 4), (128, 128, 4, 3), (64, 64, 4, 3)],
    128: [(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 3), (128, 32, 4, 4), (64, 64, 4, 3)],
}
FLASH_CONFIGS = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
                 for (m, n, w, s) in sorted({tile for tiles in FLASH_TILES.values() for tile in tiles})]


def _tiles_of_head_dim(configs, named_args, **kwargs):
    """The autotuner's early prune: only the configs listed for this call's head dim."""
    tiles = FLASH_TILES[kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))]
    return [c for c in configs if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in tiles]


flash_attention_kernel_tuned = triton.autotune(
    FLASH_CONFIGS, key=["q_len", "kv_len", "HEAD_DIM", "IS_CAUSAL"],
    prune_configs_by={"early_config_prune": _tiles_of_head_dim})(flash_attention_kernel)
# The Triton interpreter (TRITON_INTERPRET=1: tests on a CPU) runs one small tile and no autotuning.
INTERPRETER_TILE = {"BLOCK_M": 16, "BLOCK_N": 16}


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(head_dim)) v by one launch of flash_attention_kernel (the FlashAttention forward).

    q: [batch, num_heads, q_len, head_dim], k, v: [batch, num_heads, kv_len, head_dim], float16 or bfloat16,
    any strides with unit stride along head_dim (copy otherwise); head_dim one of HEAD_DIMS; any lengths.
    causal: query i sees keys j <= i + kv_len - q_len (aligned bottom-right; needs q_len <= kv_len).
    Returns (out [batch, num_heads, q_len, head_dim] in q's dtype, lse [batch, num_heads, q_len] float32,
    the natural log-sum-exp of each row's scaled scores). ValueError as check_flash_args.
    On a CUDA device launch flash_attention_kernel_tuned with grid
    `lambda meta: (triton.cdiv(q_len, meta["BLOCK_M"]), batch * num_heads)`; on a CPU (the interpreter)
    launch flash_attention_kernel directly with **INTERPRETER_TILE.
    """
    check_flash_args(q, k, v, causal)
    raise NotStarted("inf20: implement flash_attention")
