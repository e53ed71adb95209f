"""inf20 · HBM traffic of attention: the naive three-kernel version against the FlashAttention tiling.

Attention does 4 * q_len * kv_len * head_dim FLOPs per head, and an H100/H200 does ~700-1000 bf16
TFLOP/s against 3.3-4.8 TB/s of HBM: a kernel must do ~200 FLOPs per byte it moves to be compute-bound.
The naive version writes the [q_len, kv_len] scores to HBM, reads them back for the softmax, writes the
probabilities, and reads them again for P V: its bytes grow as N^2 while its FLOPs per byte stay at about
head_dim / 4, so it is memory-bound at any length. FlashAttention keeps each tile of scores on chip and
moves only Q, K, V, O (K and V once per tile of queries): its bytes grow as N^2 / BLOCK_M, and its FLOPs
per byte grow with BLOCK_M.
"""
from __future__ import annotations

from lab.errors import NotStarted


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def naive_attention_bytes(batch: int, num_heads: int, q_len: int, kv_len: int, head_dim: int,
                          dtype_bytes: int = 2) -> int:
    """HBM bytes that attention moves as three separate kernels, every tensor in dtype_bytes per element:

        S = Q K^T      reads Q [q_len, head_dim] and K [kv_len, head_dim], writes S [q_len, kv_len]
        P = softmax(S) reads S, writes P [q_len, kv_len]   (a causal mask changes nothing: S is full)
        O = P V        reads P and V [kv_len, head_dim], writes O [q_len, head_dim]

    per (batch, head). Returns the total as an int. ValueError unless every size is a positive int.
    """
    _check_sizes(batch=batch, num_heads=num_heads, q_len=q_len, kv_len=kv_len, head_dim=head_dim,
                 dtype_bytes=dtype_bytes)
    raise NotStarted("inf20: implement naive_attention_bytes")


def flash_attention_bytes(batch: int, num_heads: int, q_len: int, kv_len: int, head_dim: int, block_m: int,
                          causal: bool = False, dtype_bytes: int = 2) -> int:
    """HBM bytes of the FlashAttention forward with tiles of block_m query rows, per (batch, head):

        Q read once and O written once (dtype_bytes per element), the lse written once (4 bytes per row);
        for every tile of block_m queries (the last may be shorter), K and V read for exactly the keys
        that some row of the tile may see: all kv_len of them, or with causal (query i sees keys
        j <= i + kv_len - q_len; needs q_len <= kv_len) the first min(kv_len, last row + kv_len - q_len + 1).

    Returns the total as an int. ValueError unless every size is a positive int (and q_len <= kv_len
    when causal).
    """
    _check_sizes(batch=batch, num_heads=num_heads, q_len=q_len, kv_len=kv_len, head_dim=head_dim,
                 block_m=block_m, dtype_bytes=dtype_bytes)
    if causal and q_len > kv_len:
        raise ValueError(f"causal attention needs q_len <= kv_len, got {q_len} > {kv_len}")
    raise NotStarted("inf20: implement flash_attention_bytes")
