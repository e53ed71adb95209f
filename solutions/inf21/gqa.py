"""inf21 · Grouped-query attention: every KV head serves a group of query heads, read once, never copied.

With num_heads query heads and num_kv_heads KV heads (G = num_heads // num_kv_heads per group), query
head h attends with KV head h // G: the group's query heads are consecutive (Llama, Hugging Face and
the lab's model all number them so). The textbook way repeats each KV head G times
(`repeat_interleave`) and runs multi-head attention, which writes, then reads, G copies of the whole
cache: the very bytes GQA exists to save. Here each KV head is multiplied once for its whole group, and
decode (q_len = 1) reads each KV head's keys and values once for G queries, not G times. The lesson's
hints (README.md) show how, without a copy.
"""
from __future__ import annotations

import math

import torch


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """ValueError with the expected shapes unless q, k, v fit together (see gqa_attention)."""
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        raise ValueError("q, k and v must be tensors")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be 4-D [batch, heads, seq, head_dim]; got {list(q.shape)}, "
                         f"{list(k.shape)}, {list(v.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {list(k.shape)} and {list(v.shape)}")
    (b, h, t, d), (bk, hkv, s, dk) = q.shape, k.shape
    if b != bk or d != dk:
        raise ValueError(f"q [batch={b}, .., head_dim={d}] and k [batch={bk}, .., head_dim={dk}] must agree "
                         "on batch and head_dim")
    if hkv == 0 or h % hkv:
        raise ValueError(f"num_heads={h} must be a positive multiple of num_kv_heads={hkv} "
                         "(each KV head serves a whole group of query heads)")
    if not (q.dtype == k.dtype == v.dtype and q.dtype.is_floating_point):
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if causal and t > s:
        raise ValueError(f"causal attention needs q_len <= kv_len (the queries are the last q_len of the "
                         f"kv_len positions), got q_len={t}, kv_len={s}")


def gqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v with each KV head shared by a group of consecutive query heads.

    q:       [batch, num_heads, q_len, head_dim]
    k, v:    [batch, num_kv_heads, kv_len, head_dim]; num_heads % num_kv_heads == 0 (1 KV head: MQA;
             num_heads: MHA). Query head h uses KV head h // (num_heads // num_kv_heads).
    causal:  the q_len queries are the last q_len of the kv_len positions (prefill: q_len == kv_len;
             a chunk after a cached prefix: q_len < kv_len; decode: q_len == 1) and query i sees keys
             0 .. kv_len - q_len + i. With causal=False every query sees every key.
    returns: [batch, num_heads, q_len, head_dim] in q's dtype; softmax in float32 (float64 for float64).
    Never materializes K or V repeated to num_heads heads (no repeat_interleave, no expand + copy, no
    broadcasting matmul that copies inside torch): the tests watch every tensor your code allocates, and
    none may reach half the size of K or V repeated. Inputs are not modified.
    Raises ValueError for shapes that do not fit (message says which), mixed dtypes, or causal q_len > kv_len.
    The lesson's hints for gqa_attention show the copy-free layout.
    """
    _check_qkv(q, k, v, causal)
    # BEGIN SOLUTION
    b, h, t, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    group = h // hkv
    # Rows of one KV head's matrix: (query head in the group, token), i.e. head h = kv * group + g.
    qg = q.reshape(b, hkv, group * t, d) * (1.0 / math.sqrt(d))                  # [B, Hkv, G*T, D]
    scores = qg @ k.transpose(-1, -2)                                              # [B, Hkv, G*T, S]
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    scores = scores.to(work)
    if causal and t > 1:
        token = torch.arange(group * t, device=q.device) % t                      # row -> its token index
        visible = torch.arange(s, device=q.device)[None, :] <= (s - t + token)[:, None]   # [G*T, S]
        scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    return (probs @ v).reshape(b, h, t, d)                                         # [B, Hkv, G*T, D] -> [B, H, T, D]
    # END SOLUTION
