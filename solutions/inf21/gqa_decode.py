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
    # BEGIN SOLUTION
    pid, split = tl.program_id(0), tl.program_id(1)
    b, kv = pid // num_kv_heads, pid % num_kv_heads
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    q_rows = q_ptr + b * stride_qb + (kv * group + g)[:, None] * stride_qh + d[None, :]
    q = tl.load(q_rows, mask=(g[:, None] < group) & (d[None, :] < head_dim), other=0.0)     # [BLOCK_G, BLOCK_D]
    q = q.to(tl.float32) * scale
    if not DOT_F32:
        q = q.to(q_ptr.dtype.element_ty)                      # 16-bit tensor-core dots on a GPU

    m = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    start = split * split_len
    end = tl.minimum(start + split_len, kv_len)
    k_base = k_ptr + b * stride_kb + kv * stride_kh
    v_base = v_ptr + b * stride_vb + kv * stride_vh
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        valid = s < end
        kv_mask = valid[:, None] & (d[None, :] < head_dim)
        k = tl.load(k_base + s[:, None] * stride_ks + d[None, :], mask=kv_mask, other=0.0)    # [BLOCK_S, BLOCK_D]
        v = tl.load(v_base + s[:, None] * stride_vs + d[None, :], mask=kv_mask, other=0.0)
        if DOT_F32:
            scores = tl.dot(q, tl.trans(k.to(tl.float32)), input_precision="ieee")       # [BLOCK_G, BLOCK_S]
        else:
            scores = tl.dot(q, tl.trans(k))                                            # fp32 accumulation
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))        # finite: every tile has a valid key
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        if DOT_F32:
            acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new

    row = pid * num_splits + split
    tl.store(m_ptr + row * BLOCK_G + g, m)
    tl.store(l_ptr + row * BLOCK_G + g, l)
    tl.store(acc_ptr + (row * BLOCK_G + g)[:, None] * BLOCK_D + d[None, :], acc)
    # END SOLUTION


@triton.jit
def gqa_decode_combine_kernel(m_ptr, l_ptr, acc_ptr, out_ptr, group, num_kv_heads, num_splits, head_dim,
                              stride_ob, stride_oh,
                              BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_SPLITS: tl.constexpr):
    """Program (pid0 = b * num_kv_heads + kv, pid1 = g): combine the splits of query head kv * group + g
    into out[b, kv * group + g, 0, :] (out: [B, H, 1, D], strides stride_ob, stride_oh, D contiguous).

    Reads the split kernel's m, l, acc (layout in its docstring) for row g of all num_splits splits
    (BLOCK_SPLITS >= num_splits, a power of two) and stores softmax(all scores) @ v in out's dtype.
    """
    # BEGIN SOLUTION
    pid, g = tl.program_id(0), tl.program_id(1)
    b, kv = pid // num_kv_heads, pid % num_kv_heads
    i = tl.arange(0, BLOCK_SPLITS)
    d = tl.arange(0, BLOCK_D)
    rows = (pid * num_splits + i) * BLOCK_G + g                                        # [BLOCK_SPLITS]
    m = tl.load(m_ptr + rows, mask=i < num_splits, other=float("-inf"))
    l = tl.load(l_ptr + rows, mask=i < num_splits, other=0.0)
    acc = tl.load(acc_ptr + rows[:, None] * BLOCK_D + d[None, :], mask=(i < num_splits)[:, None], other=0.0)
    w = tl.exp(m - tl.max(m, axis=0))                                                  # padded splits: 0
    out = tl.sum(acc * w[:, None], axis=0) / tl.sum(l * w, axis=0)                     # [BLOCK_D]
    out_row = out_ptr + b * stride_ob + (kv * group + g) * stride_oh + d
    tl.store(out_row, out.to(out_ptr.dtype.element_ty), mask=d < head_dim)
    # END SOLUTION


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
    # BEGIN SOLUTION
    _check_qkv(q, k, v, causal=True)
    if q.shape[2] != 1:
        raise ValueError(f"gqa_decode_triton decodes one token per sequence: q_len must be 1, got {q.shape[2]}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("q, k and v need a contiguous last (head_dim) dimension")
    batch, num_heads, _, head_dim = q.shape
    num_kv_heads, kv_len = k.shape[1], k.shape[2]
    group = num_heads // num_kv_heads
    # 32 keys a tile and ~2 programs per SM: on an H100 (docs/perf/kernel_sweep.py, session 10) 0.359 ms at the
    # speed test's shape (2.99 TB/s, 3.75x SDPA MHA by do_bench; 3.24-3.28x in the test's timing), where 64 keys
    # and 4 per SM took 0.388 ms (3.48x; 3.06-3.09x). Warps and stages: Triton's defaults (4, 3) were as good.
    block_s = block_s or (32 if q.is_cuda else 16)
    block_g = max(16, triton.next_power_of_2(group))          # tl.dot needs 16 rows
    block_d = max(16, triton.next_power_of_2(head_dim))
    num_tiles = triton.cdiv(kv_len, block_s)
    if num_splits is None:
        programs = 2 * (_num_sms(q.device) if q.is_cuda else 1)
        num_splits = triton.cdiv(programs, batch * num_kv_heads)
    tiles_per_split = triton.cdiv(num_tiles, max(1, min(num_splits, num_tiles)))
    num_splits = triton.cdiv(num_tiles, tiles_per_split)                               # none empty
    split_len = tiles_per_split * block_s

    rows = batch * num_kv_heads * num_splits
    m = torch.empty(rows, block_g, device=q.device, dtype=torch.float32)
    l = torch.empty_like(m)
    acc = torch.empty(rows, block_g, block_d, device=q.device, dtype=torch.float32)
    out = torch.empty_like(q)
    gqa_decode_split_kernel[(batch * num_kv_heads, num_splits)](
        q, k, v, m, l, acc, kv_len, group, num_kv_heads, head_dim ** -0.5,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        split_len, num_splits, head_dim, BLOCK_G=block_g, BLOCK_S=block_s, BLOCK_D=block_d,
        DOT_F32=q.dtype == torch.float32 or not q.is_cuda)
    gqa_decode_combine_kernel[(batch * num_kv_heads, group)](
        m, l, acc, out, group, num_kv_heads, num_splits, head_dim, out.stride(0), out.stride(1),
        BLOCK_G=block_g, BLOCK_D=block_d, BLOCK_SPLITS=max(2, triton.next_power_of_2(num_splits)))
    return out
    # END SOLUTION
