"""inf20 tests: HBM bytes of naive and tiled attention, exactly.

Oracles: the naive pipeline run on meta tensors (shapes and dtypes, no data) summing the bytes each of its
three kernels reads and writes; for the tiling, the causal mask itself, asking which keys each tile of
queries may see.
"""
import pytest
import torch

from lab.impl import Topic
from lab.testing import pick

impl = Topic("inf20")

DTYPE_OF_BYTES = {1: torch.float8_e4m3fn, 2: torch.bfloat16, 4: torch.float32}


def naive_bytes_on_meta(batch, num_heads, q_len, kv_len, head_dim, dtype_bytes) -> int:
    """Run S = QK^T, P = softmax(S), O = PV on meta tensors and add up every input read and output written."""
    dtype = DTYPE_OF_BYTES[dtype_bytes]
    q = torch.empty(batch, num_heads, q_len, head_dim, dtype=dtype, device="meta")
    k = torch.empty(batch, num_heads, kv_len, head_dim, dtype=dtype, device="meta")
    v = torch.empty_like(k)
    s = torch.empty(batch, num_heads, q_len, kv_len, dtype=dtype, device="meta")     # what q @ k^T writes
    p = torch.empty_like(s)                                                          # what softmax writes
    o = torch.empty_like(q)                                                          # what p @ v writes
    kernels = [((q, k), s), ((s,), p), ((p, v), o)]
    return sum(sum(t.nbytes for t in reads) + written.nbytes for reads, written in kernels)


def flash_bytes_from_the_mask(batch, num_heads, q_len, kv_len, head_dim, block_m, causal, dtype_bytes) -> int:
    rows = torch.arange(q_len)[:, None]
    sees = (torch.arange(kv_len)[None, :] <= rows + (kv_len - q_len) if causal
            else torch.ones(q_len, kv_len, dtype=torch.bool))
    keys = sum(int(sees[start:start + block_m].any(0).sum()) for start in range(0, q_len, block_m))
    q_and_o = 2 * q_len * head_dim * dtype_bytes
    return batch * num_heads * (q_and_o + 4 * q_len + 2 * keys * head_dim * dtype_bytes)


@pytest.mark.parametrize("dtype_bytes", [1, 2, 4])
def test_naive_bytes_count_every_score_written_and_read(rng, dtype_bytes):
    sizes = (pick(rng, 1, 5), pick(rng, 1, 40), pick(rng, 1, 3000), pick(rng, 1, 9000), pick(rng, 8, 256))
    got = impl.traffic.naive_attention_bytes(*sizes, dtype_bytes=dtype_bytes)
    want = naive_bytes_on_meta(*sizes, dtype_bytes)
    assert isinstance(got, int) and got == want, (
        f"naive_attention_bytes{sizes}, {dtype_bytes}-byte elements: expected {want:,} bytes, got {got!r}: "
        "count Q, K read and S written; S read and P written; P, V read and O written")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flash_bytes_read_keys_once_per_query_tile(rng, causal):
    for _ in range(5):
        batch, num_heads, head_dim, block_m = pick(rng, 1, 4), pick(rng, 1, 33), pick(rng, 16, 256), pick(rng, 16, 128)
        q_len = pick(rng, 1, 700)
        kv_len = q_len + pick(rng, 0, 400)
        if not causal and pick(rng, 0, 1):
            q_len, kv_len = kv_len, q_len                   # more queries than keys: only without a mask
        dtype_bytes = (1, 2, 4)[pick(rng, 0, 2)]
        got = impl.traffic.flash_attention_bytes(batch, num_heads, q_len, kv_len, head_dim, block_m,
                                                 causal=causal, dtype_bytes=dtype_bytes)
        want = flash_bytes_from_the_mask(batch, num_heads, q_len, kv_len, head_dim, block_m, causal, dtype_bytes)
        assert isinstance(got, int) and got == want, (
            f"flash_attention_bytes(batch {batch}, heads {num_heads}, q_len {q_len}, kv_len {kv_len}, "
            f"head_dim {head_dim}, block_m {block_m}, causal {causal}, {dtype_bytes} B): expected {want:,}, "
            f"got {got!r}: Q and O once, 4 bytes of lse per row, and K, V for the keys each query tile may see")


def test_traffic_rejects_bad_sizes():
    traffic = impl.traffic
    assert traffic.naive_attention_bytes(1, 1, 1, 1, 1) == 2 * 8
    for args in [(0, 1, 4, 4, 64), (1, 1, 4, 4, -64), (1, 1, 4.0, 4, 64)]:
        with pytest.raises(ValueError):
            traffic.naive_attention_bytes(*args)
            pytest.fail(f"naive_attention_bytes{args} must raise ValueError")
    for args, kwargs in [((1, 1, 4, 4, 64, 0), {}), ((1, 1, 8, 4, 64, 16), {"causal": True}),
                         ((1, 1, 4, 4, 64, 16), {"dtype_bytes": 0})]:
        with pytest.raises(ValueError):
            traffic.flash_attention_bytes(*args, **kwargs)
            pytest.fail(f"flash_attention_bytes{args} {kwargs} must raise ValueError")
