"""inf31 · Paged attention: write K/V by slot, and attend through block tables, in PyTorch and in Triton.

One layer's paged KV cache is two tensors of shape [num_blocks, block_size, num_kv_heads, head_dim]
(vLLM's and FlashInfer's NHD layout): block b, offset o holds one token's K (or V) for every KV head.
Seen flat, [num_blocks * block_size, num_kv_heads, head_dim], token slot s = b * block_size + o is one
row, which is how `write_kv` stores a step's new tokens (the slots come from BlockAllocator.append_slots).

Decode attention: each sequence has one new query token, [num_heads, head_dim], and attends to its
context_len stored tokens, found through its block table (a row of `block_tables`, padded past the
sequence's blocks). With GQA, query heads h of one group share KV head h // (num_heads // num_kv_heads).

Two implementations with one signature: `paged_attention` in PyTorch (gather the slots, then attend: the
reference, and the CPU path) and `paged_attention_triton`, a Triton decode kernel that reads K/V through
the block table in place, never building a contiguous copy (flash-decoding: the context is cut into
partitions, one program per (sequence, KV head, partition), each with its own online softmax; a second
small kernel merges the partitions by their log-sum-exp).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


def _check_cache(k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    if not isinstance(k_cache, torch.Tensor) or not isinstance(v_cache, torch.Tensor) or k_cache.dim() != 4 \
            or k_cache.shape != v_cache.shape or k_cache.dtype != v_cache.dtype or k_cache.device != v_cache.device:
        raise ValueError("k_cache and v_cache must be tensors of one shape [num_blocks, block_size, num_kv_heads, "
                         f"head_dim], dtype and device; got {getattr(k_cache, 'shape', k_cache)} and "
                         f"{getattr(v_cache, 'shape', v_cache)}")


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """Store new tokens' K and V in the paged cache, in place: token i goes to slot slot_mapping[i].

    k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim]; slot s is block s // block_size,
                      offset s % block_size.
    k, v:             [num_tokens, num_kv_heads, head_dim], any float dtype (stored in the cache's dtype).
    slot_mapping:     [num_tokens] integer; a slot of -1 means "padding, store nothing".
    Returns None. Raises ValueError on mismatched shapes or a slot outside [-1, num_blocks * block_size).
    """
    _check_cache(k_cache, v_cache)
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    if k.shape != v.shape or k.dim() != 3 or k.shape[1:] != (num_kv_heads, head_dim):
        raise ValueError(f"k and v must be [num_tokens, num_kv_heads={num_kv_heads}, head_dim={head_dim}], "
                         f"got {list(k.shape)} and {list(v.shape)}")
    if slot_mapping.shape != (k.shape[0],) or slot_mapping.dtype.is_floating_point:
        raise ValueError(f"slot_mapping must be [num_tokens={k.shape[0]}] integers, got "
                         f"{slot_mapping.dtype} {list(slot_mapping.shape)}")
    if slot_mapping.numel() and (slot_mapping.min() < -1 or slot_mapping.max() >= num_blocks * block_size):
        raise ValueError(f"slots must be in [-1, {num_blocks * block_size}) (num_blocks * block_size), got "
                         f"{int(slot_mapping.min())} .. {int(slot_mapping.max())}")
    # BEGIN SOLUTION
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].to(device=k_cache.device, dtype=torch.long)
    k_cache.view(-1, num_kv_heads, head_dim)[slots] = k[keep].to(k_cache.dtype)
    v_cache.view(-1, num_kv_heads, head_dim)[slots] = v[keep].to(v_cache.dtype)
    # END SOLUTION


def copy_blocks(k_cache: torch.Tensor, v_cache: torch.Tensor, copies: list[tuple[int, int]]) -> None:
    """Apply BlockAllocator.append_slots' copy-on-write pairs: block dst of both caches becomes a copy of
    block src (before the new tokens are written). Given: a model runner calls it, the lesson needs no more."""
    for src, dst in copies:
        k_cache[dst] = k_cache[src]
        v_cache[dst] = v_cache[src]


def _check_decode_args(q, k_cache, v_cache, block_tables, context_lens) -> None:
    """ValueError with the expected shapes unless the decode attention's arguments fit together."""
    _check_cache(k_cache, v_cache)
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    if not isinstance(q, torch.Tensor) or q.dim() != 3 or q.shape[2] != head_dim or q.shape[1] % num_kv_heads:
        raise ValueError(f"q must be [num_seqs, num_heads, head_dim={head_dim}] with num_heads a multiple of "
                         f"num_kv_heads={num_kv_heads}, got {getattr(q, 'shape', q)}")
    num_seqs = q.shape[0]
    if block_tables.dim() != 2 or block_tables.shape[0] != num_seqs or block_tables.dtype.is_floating_point:
        raise ValueError(f"block_tables must be [num_seqs={num_seqs}, max_blocks_per_seq] integers, got "
                         f"{block_tables.dtype} {list(block_tables.shape)}")
    if context_lens.shape != (num_seqs,) or context_lens.dtype.is_floating_point:
        raise ValueError(f"context_lens must be [num_seqs={num_seqs}] integers, got {context_lens.dtype} "
                         f"{list(context_lens.shape)}")
    # Values are checked on the CPU only: on a GPU the check would cost a device sync every decode step.
    if num_seqs and not context_lens.is_cuda and (context_lens.min() < 1
                                                  or context_lens.max() > block_tables.shape[1] * block_size):
        raise ValueError(f"context_lens must be in [1, max_blocks_per_seq * block_size = "
                         f"{block_tables.shape[1] * block_size}], got {context_lens.tolist()}")


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                    context_lens: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Decode attention through block tables, in PyTorch: one query token per sequence.

    q:            [num_seqs, num_heads, head_dim], the new token of each sequence.
    k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim]; num_heads % num_kv_heads == 0.
    block_tables: [num_seqs, max_blocks_per_seq] integer; row i lists sequence i's blocks in token
                  order (entries past its blocks are padding, never read).
    context_lens: [num_seqs] integer in [1, max_blocks_per_seq * block_size]: tokens sequence i attends to
                  (checked when on the CPU).
    scale:        softmax scale, 1 / sqrt(head_dim) when None.
    Returns [num_seqs, num_heads, head_dim] in q's dtype: softmax(q k^T * scale) v over each
    sequence's first context_lens[i] tokens, computed in float32; query head h reads KV head
    h // (num_heads // num_kv_heads). Token t of sequence i is in block block_tables[i, t // block_size] at
    offset t % block_size. Raises ValueError (as _check_decode_args) when the arguments do not fit.
    """
    _check_decode_args(q, k_cache, v_cache, block_tables, context_lens)
    # BEGIN SOLUTION
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    num_seqs, num_heads, _ = q.shape
    scale = 1 / math.sqrt(head_dim) if scale is None else scale
    max_len = int(context_lens.max()) if num_seqs else 0
    pos = torch.arange(max_len, device=q.device)                                     # [max_len]
    tables = block_tables.to(device=q.device, dtype=torch.long)
    slots = tables[:, pos // block_size] * block_size + pos % block_size              # [num_seqs, max_len]
    k = k_cache.view(-1, num_kv_heads, head_dim)[slots].float()        # [num_seqs, max_len, num_kv_heads, D]
    v = v_cache.view(-1, num_kv_heads, head_dim)[slots].float()
    group = num_heads // num_kv_heads
    qg = q.float().view(num_seqs, num_kv_heads, group, head_dim)                      # GQA: heads by group
    scores = torch.einsum("skgd,stkd->skgt", qg, k) * scale                          # [S, Hkv, G, max_len]
    valid = pos[None, :] < context_lens.to(q.device)[:, None]                         # [S, max_len]
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    out = torch.einsum("skgt,stkd->skgd", torch.softmax(scores, dim=-1), v)
    return out.reshape(num_seqs, num_heads, head_dim).to(q.dtype)
    # END SOLUTION


@triton.jit
def paged_decode_kernel(q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr,
                        part_out_ptr, part_lse_ptr, scale,
                        stride_qs, stride_qh, stride_kb, stride_kt, stride_kh, stride_bts,
                        stride_po_s, stride_po_h, stride_po_p, stride_pl_s, stride_pl_h,
                        GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
                        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, PARTITION: tl.constexpr):
    """One program: sequence s, KV head h, partition p of the context (tokens [p * PARTITION, (p + 1) * PARTITION)).

    Serves the GROUP query heads h * GROUP + g (g < GROUP) that share KV head h; GROUP_PAD is GROUP
    rounded up to a power of two, at least 16 (tl.dot's minimum). q: [num_seqs, num_heads, HEAD_DIM]
    (strides stride_qs, stride_qh). Token t of sequence s is in block block_tables[s, t // BLOCK_SIZE]
    (row stride stride_bts) at offset t % BLOCK_SIZE; K/V rows are read in place from the paged caches
    (strides: stride_kb per block, stride_kt per token, stride_kh per head; head_dim contiguous), never
    copied. Only tokens t < context_lens[s] count; scores are scale * q . k, in float32.
    Writes, for each g < GROUP, over the partition's tokens: part_out[s, h * GROUP + g, p, :] = softmax(scores)
    @ V normalized within the partition (float32), and part_lse[s, h * GROUP + g, p] = the natural
    log-sum-exp of those scores; a partition with no token of the context writes lse -inf (and no NaN).
    The lesson's hints for the kernel cover the loop and the masking.
    """
    # BEGIN SOLUTION
    seq, kv_head, part = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    context_len = tl.load(context_lens_ptr + seq)
    start = part * PARTITION
    g = tl.arange(0, GROUP_PAD)
    d = tl.arange(0, HEAD_DIM)
    heads = kv_head * GROUP + g
    q = tl.load(q_ptr + seq * stride_qs + heads[:, None] * stride_qh + d[None, :],
                mask=g[:, None] < GROUP, other=0.0)                                   # [GROUP_PAD, D]
    m = tl.full((GROUP_PAD,), -1e30, tl.float32)          # finite, so exp(m_old - m_new) never sees inf - inf
    l = tl.zeros((GROUP_PAD,), tl.float32)
    acc = tl.zeros((GROUP_PAD, HEAD_DIM), tl.float32)
    offs = tl.arange(0, BLOCK_N)
    end = tl.minimum(start + PARTITION, context_len)
    for tile in range(start, end, BLOCK_N):
        pos = tile + offs                                                             # [BLOCK_N] token positions
        valid = pos < end
        block_ids = tl.load(block_tables_ptr + seq * stride_bts + pos // BLOCK_SIZE, mask=valid, other=0)
        rows = block_ids.to(tl.int64) * stride_kb + (pos % BLOCK_SIZE) * stride_kt + kv_head * stride_kh
        k = tl.load(k_cache_ptr + rows[:, None] + d[None, :], mask=valid[:, None], other=0.0)   # [BLOCK_N, D]
        v = tl.load(v_cache_ptr + rows[:, None] + d[None, :], mask=valid[:, None], other=0.0)
        scores = tl.dot(q, tl.trans(k)) * scale                                       # [GROUP_PAD, BLOCK_N]
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    has_tokens = l > 0
    out = acc / tl.where(has_tokens, l, 1.0)[:, None]
    lse = tl.where(has_tokens, m + tl.log(tl.where(has_tokens, l, 1.0)), float("-inf"))
    out_rows = seq * stride_po_s + heads * stride_po_h + part * stride_po_p
    tl.store(part_out_ptr + out_rows[:, None] + d[None, :], out, mask=g[:, None] < GROUP)
    tl.store(part_lse_ptr + seq * stride_pl_s + heads * stride_pl_h + part, lse, mask=g < GROUP)
    # END SOLUTION


@triton.jit
def merge_partitions_kernel(part_out_ptr, part_lse_ptr, out_ptr, num_parts,
                            stride_po_s, stride_po_h, stride_po_p, stride_pl_s, stride_pl_h, stride_os, stride_oh,
                            HEAD_DIM: tl.constexpr, PARTS_PAD: tl.constexpr):
    """One program: sequence s, query head h. Combines the num_parts partitions' normalized outputs and
    log-sum-exps into out[s, h, :] (out's dtype): attention over the whole context, as if computed in one
    piece. Partitions with lse -inf contribute nothing. PARTS_PAD: num_parts rounded up to a power of two
    (at least 2); padded entries must not count."""
    # BEGIN SOLUTION
    seq, head = tl.program_id(0), tl.program_id(1)
    p = tl.arange(0, PARTS_PAD)
    d = tl.arange(0, HEAD_DIM)
    lse = tl.load(part_lse_ptr + seq * stride_pl_s + head * stride_pl_h + p, mask=p < num_parts,
                  other=float("-inf"))
    w = tl.exp(lse - tl.max(lse, axis=0))
    w = w / tl.sum(w, axis=0)
    parts = tl.load(part_out_ptr + seq * stride_po_s + head * stride_po_h + p[:, None] * stride_po_p + d[None, :],
                    mask=p[:, None] < num_parts, other=0.0)                             # [PARTS_PAD, D]
    out = tl.sum(parts * w[:, None], axis=0)
    tl.store(out_ptr + seq * stride_os + head * stride_oh + d, out.to(out_ptr.dtype.element_ty))
    # END SOLUTION


# Tokens per program on a GPU: 1,024 (vLLM's paged attention v2 uses 512). At batch 16 and 4k context on a
# Llama-3-8B shape (8 KV heads) that is 16 * 8 * 4 = 512 programs, several per SM. Fixed tiles, chosen by a
# sweep on an H100 (PARTITION 256-1024, BLOCK_N 32-256, 2-8 warps, 1-4 stages; triton.testing.do_bench):
# 82% of copy bandwidth at batch 16 and 4k context, 95% at batch 32 and 8k, against 81% and 93% for 512 with
# the autotuner; and no autotuner means no tuning pass on the first call and less Python on every call
# (at ~100 us a step, the launch costs show). The interpreter (tests on a CPU) runs small tiles, several
# partitions per sequence.
CUDA_TILES = {"PARTITION": 1024, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
INTERPRETER_TILES = {"PARTITION": 32, "BLOCK_N": 16}


def paged_attention_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                           context_lens: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """`paged_attention` as two Triton launches (same arguments, same result up to float32 rounding; on a
    GPU, float32 caches go through TF32 tensor cores and bf16/fp16 ones round P to their dtype before P V).

    Launch `paged_decode_kernel` on a grid (num_seqs, num_kv_heads, num_parts) with num_parts =
    cdiv(max_blocks_per_seq * block_size, PARTITION) (reading context_lens.max() would sync the GPU) into
    float32 scratch part_out [num_seqs, num_heads, num_parts, head_dim] and part_lse [num_seqs,
    num_heads, num_parts], then `merge_partitions_kernel` on (num_seqs, num_heads) into the output.
    head_dim must be a power of two (16 or more) and the cache's last dimension contiguous. On a CUDA
    device launch `paged_decode_kernel` with **CUDA_TILES; on a CPU (the interpreter) with
    **INTERPRETER_TILES. Returns [num_seqs, num_heads, head_dim] in q's dtype. Raises ValueError as
    paged_attention does, and for a head_dim or cache layout the kernel cannot take.
    """
    _check_decode_args(q, k_cache, v_cache, block_tables, context_lens)
    num_blocks, block_size, num_kv_heads, head_dim = k_cache.shape
    if head_dim < 16 or head_dim & (head_dim - 1) or k_cache.stride(3) != 1 or v_cache.stride() != k_cache.stride():
        raise ValueError(f"the kernel needs a power-of-two head_dim >= 16 (got {head_dim}) and K/V caches "
                         "of the same strides with head_dim contiguous")
    # BEGIN SOLUTION
    num_seqs, num_heads, _ = q.shape
    scale = 1 / math.sqrt(head_dim) if scale is None else scale
    tiles = CUDA_TILES if q.is_cuda else INTERPRETER_TILES
    out_dtype = q.dtype
    q = q.to(k_cache.dtype).contiguous()                 # tl.dot wants both operands in one dtype
    block_tables = block_tables.to(torch.int32).contiguous()
    context_lens = context_lens.to(torch.int32).contiguous()
    # Partitions for the longest context a table can hold (no device sync to read context_lens); those past a
    # sequence's context exit at once.
    num_parts = triton.cdiv(block_tables.shape[1] * block_size, tiles["PARTITION"])
    part_out = torch.empty(num_seqs, num_heads, num_parts, head_dim, device=q.device, dtype=torch.float32)
    part_lse = torch.empty(num_seqs, num_heads, num_parts, device=q.device, dtype=torch.float32)
    group = num_heads // num_kv_heads
    paged_decode_kernel[(num_seqs, num_kv_heads, num_parts)](
        q, k_cache, v_cache, block_tables, context_lens, part_out, part_lse, scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        part_out.stride(0), part_out.stride(1), part_out.stride(2), part_lse.stride(0), part_lse.stride(1),
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, BLOCK_SIZE=block_size,
        **tiles)
    out = torch.empty(num_seqs, num_heads, head_dim, device=q.device, dtype=out_dtype)
    merge_partitions_kernel[(num_seqs, num_heads)](
        part_out, part_lse, out, num_parts, part_out.stride(0), part_out.stride(1), part_out.stride(2),
        part_lse.stride(0), part_lse.stride(1), out.stride(0), out.stride(1),
        HEAD_DIM=head_dim, PARTS_PAD=max(2, triton.next_power_of_2(num_parts)))
    return out
    # END SOLUTION
