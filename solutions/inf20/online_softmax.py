"""inf20 · Online softmax: attention computed block by block, never holding a whole row of scores.

softmax(s) v over a row of scores s_1..s_S needs the row's max (for stability) and the sum of exp before
any output can be normalized, which seems to need the whole row. It does not: a few running values per
query row, corrected whenever a new block of keys raises the row's max, let the keys be folded in one
block at a time, and the row's log-sum-exp (which FlashAttention saves for the backward pass) falls out
at the end. Only a [block_q, block_k] tile of scores exists at any time: memory O(N), not O(N^2).
The lesson (README.md, "Hints") derives the recurrence step by step.
"""
from __future__ import annotations

import math

import torch


def check_attention_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """ValueError naming the expected shapes unless q, k, v fit together (shared with flash_attention)."""
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        raise ValueError("q, k and v must be tensors")
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"need q [batch, num_heads, q_len, head_dim] and k, v [batch, num_heads, kv_len, head_dim]"
                         f" (k and v the same shape); got q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {list(q.shape)} and k {list(k.shape)} must agree in batch, num_heads and head_dim "
                         "(grouped KV heads are inf21's topic)")
    if q.dtype != k.dtype or q.dtype != v.dtype or not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"q_len and kv_len must be at least 1, got {q.shape[2]} and {k.shape[2]}")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"causal attention needs q_len <= kv_len (the queries are the last q_len positions), "
                         f"got q_len {q.shape[2]} > kv_len {k.shape[2]}")


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(head_dim)) v by online softmax over tiles of block_size queries x block_size keys.

    q: [batch, num_heads, q_len, head_dim]; k, v: [batch, num_heads, kv_len, head_dim]; any float dtype.
    causal: query i (0-based) sees keys j <= i + kv_len - q_len (aligned bottom-right: the queries are the
    last q_len positions of the sequence, as in a prefill after a cached prefix); needs q_len <= kv_len.
    Returns (out [batch, num_heads, q_len, head_dim] in q's dtype, lse [batch, num_heads, q_len] float32),
    lse being the natural log of each row's sum of exp(scaled scores). Computes in float32 (float64 for
    float64 inputs). Never builds a [q_len, kv_len] tensor: at most [batch, num_heads, block_size, block_size].
    Does not modify q, k or v. ValueError on shapes that do not fit (check_attention_args) or block_size < 1.
    Stuck? The lesson's hints for tiled_attention go from the idea to the shape of the loop.
    """
    check_attention_args(q, k, v, causal)
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    # BEGIN SOLUTION
    compute = torch.promote_types(q.dtype, torch.float32)
    q_len, kv_len, head_dim = q.shape[2], k.shape[2], q.shape[3]
    offset = kv_len - q_len                       # causal: query i sees keys j <= i + offset
    scale = 1 / math.sqrt(head_dim)
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    for q_start in range(0, q_len, block_size):
        q_end = min(q_start + block_size, q_len)
        q_blk = q[:, :, q_start:q_end].to(compute) * scale                      # [B, H, bq, D]
        m = torch.full(q_blk.shape[:3], -math.inf, dtype=compute, device=q.device)   # running max [B, H, bq]
        l = torch.zeros_like(m)                                                  # running sum of exp
        acc = torch.zeros_like(q_blk)                                            # running output [B, H, bq, D]
        # Causal: the last row of this tile sees keys up to q_end - 1 + offset; later tiles are skipped.
        kv_stop = min(kv_len, q_end + offset) if causal else kv_len
        for k_start in range(0, kv_stop, block_size):
            k_end = min(k_start + block_size, kv_stop)
            s = q_blk @ k[:, :, k_start:k_end].to(compute).transpose(-1, -2)      # [B, H, bq, bk]
            if causal and k_end - 1 > q_start + offset:                          # the tile crosses the diagonal
                rows = torch.arange(q_start, q_end, device=q.device)[:, None]
                cols = torch.arange(k_start, k_end, device=q.device)[None, :]
                s = s.masked_fill(cols > rows + offset, -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1))            # finite: each row's first tile holds key 0
            alpha = torch.exp(m - m_new)                        # rescales what was summed under the old max
            p = torch.exp(s - m_new[..., None])
            l = alpha * l + p.sum(dim=-1)
            acc = alpha[..., None] * acc + p @ v[:, :, k_start:k_end].to(compute)
            m = m_new
        out[:, :, q_start:q_end] = (acc / l[..., None]).to(q.dtype)
        lse[:, :, q_start:q_end] = (m + torch.log(l)).float()
    return out, lse
    # END SOLUTION
