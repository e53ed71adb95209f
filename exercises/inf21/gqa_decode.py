"""inf21 · A GQA decode kernel in Triton: each KV head streamed once for all the query heads of its group.

At decode (one new token per sequence) attention is a memory problem: the whole KV cache is read to
produce one output row per query head, with 2 FLOPs per byte or so. GQA's saving is real only if each
KV head's keys and values are read *once* for its G query heads. This kernel does that with the
split-KV ("flash-decoding") scheme, in two launches:

1. `gqa_decode_split_kernel`, one program per (sequence, KV head, split of the context): the partial
   softmax of the group's G queries over the split's keys, written as (m, l, acc) per query row. Many
   splits keep every SM streaming even at batch 1.
2. `gqa_decode_combine_kernel`, one program per (sequence, query head): the splits' partial results
   combined into that head's normalized output.

The lesson's hints (README.md) cover the online softmax in the split and the combine step.

Its PyTorch reference is `gqa.gqa_attention` with q_len = 1 (same arguments, same result).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from lab.errors import NotStarted

from .gqa import _check_qkv


@triton.jit
def gqa_decode_split_kernel(q_ptr, k_ptr, v_ptr, m_ptr, l_ptr, acc_ptr, kv_len, group, num_kv_heads, scale,
                            stride_qb, stride_qh, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
                            split_len, num_splits, head_dim,
                            BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
                            DOT_F32: tl.constexpr):
    """Program (pid0 = b * num_kv_heads + kv, pid1 = split): the split's partial softmax for one group.

    q: [B, H, 1, D] (strides stride_qb, stride_qh; D contiguous); k, v: [B, Hkv, S, D] (strides given,
    D contiguous); query head kv * group + g uses KV head kv. The split covers keys
    [split * split_len, min((split + 1) * split_len, kv_len)), never empty.
    scale = 1 / sqrt(head_dim) (head_dim: the real size; BLOCK_D >= head_dim, BLOCK_G >= group are the
    padded tile sizes, powers of two and at least 16). For query row g < group of the split, with scores
    s_j = scale * q_g . k_j over the split's keys j, writes (contiguous float32 buffers)
    m: [B * Hkv, num_splits, BLOCK_G]            m_g = max_j s_j,
    l: [B * Hkv, num_splits, BLOCK_G]            l_g = sum_j exp(s_j - m_g),
    acc: [B * Hkv, num_splits, BLOCK_G, BLOCK_D] acc_g = sum_j exp(s_j - m_g) v_j (unnormalized; columns
    past head_dim zero). Rows g >= group are padding: written, never read for output.
    DOT_F32: multiply in float32 (exact "ieee" products, not tf32): for float32 inputs, and in the Triton
    interpreter, whose tl.dot on 16-bit tiles returns garbage (Triton 3.9 with numpy < 2.4).
    """
    raise NotStarted("inf21: implement gqa_decode_split_kernel")


@triton.jit
def gqa_decode_combine_kernel(m_ptr, l_ptr, acc_ptr, out_ptr, group, num_kv_heads, num_splits, head_dim,
                              stride_ob, stride_oh,
                              BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_SPLITS: tl.constexpr):
    """Program (pid0 = b * num_kv_heads + kv, pid1 = g): combine the splits of query head kv * group + g
    into out[b, kv * group + g, 0, :] (out: [B, H, 1, D], strides stride_ob, stride_oh, D contiguous).

    Reads the split kernel's m, l, acc (layout in its docstring) for row g of all num_splits splits
    (BLOCK_SPLITS >= num_splits, a power of two) and stores softmax(all scores) @ v in out's dtype.
    """
    raise NotStarted("inf21: implement gqa_decode_combine_kernel")


@functools.cache
def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def gqa_decode_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_s: int | None = None,
                      num_splits: int | None = None) -> torch.Tensor:
    """`gqa.gqa_attention(q, k, v)` for one new token per sequence, as two Triton launches.

    q: [batch, num_heads, 1, head_dim]; k, v: [batch, num_kv_heads, kv_len, head_dim] (a slice of a
    preallocated cache is fine: any strides, but the last dimension contiguous); same dtype; query head h
    uses KV head h // (num_heads // num_kv_heads). Returns [batch, num_heads, 1, head_dim] in q's dtype.
    block_s: keys per tile (default 32 on a GPU, 16 in the interpreter); num_splits: context splits per
    (sequence, KV head) (default: enough programs for about 2 per SM, at most one split per tile).
    Launch `gqa_decode_split_kernel` on grid (batch * num_kv_heads, num_splits), then
    `gqa_decode_combine_kernel` on grid (batch * num_kv_heads, group); nothing else touches the data.
    The launches pass partial results through the float32 buffers the split kernel documents, allocated
    here for the actual number of splits (no split may be empty).
    Raises ValueError as gqa_attention does (`_check_qkv(q, k, v, causal=True)`), and when q_len != 1 or
    the last dimension is not contiguous.
    """
    raise NotStarted("inf21: implement gqa_decode_triton")
