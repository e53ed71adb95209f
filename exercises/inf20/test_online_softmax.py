"""inf20 tests: attention by online softmax over tiles, against float64 attention computed in one piece.

Oracle: `attention_float64` below (softmax of the whole masked score matrix in float64, and its
log-sum-exp), on inputs of odd sizes that are not multiples of the block size.
"""
import math

import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, largest_new_tensor, pick

impl = Topic("inf20")


def attention_float64(q, k, v, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) in float64 on the CPU: softmax(q k^T / sqrt(d)) v with the whole score matrix, causal
    aligned bottom-right (query i sees keys j <= i + kv_len - q_len)."""
    q, k, v = (t.detach().cpu().double() for t in (q, k, v))
    q_len, kv_len = q.shape[2], k.shape[2]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        hidden = torch.arange(kv_len)[None, :] > torch.arange(q_len)[:, None] + (kv_len - q_len)
        s = s.masked_fill(hidden, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    return torch.exp(s - lse[..., None]) @ v, lse


def random_qkv(gen, batch, num_heads, q_len, kv_len, head_dim, dtype=torch.float32, scale=1.0, device="cpu"):
    q = torch.randn(batch, num_heads, q_len, head_dim, generator=gen) * scale
    k = torch.randn(batch, num_heads, kv_len, head_dim, generator=gen) * scale
    v = torch.randn(batch, num_heads, kv_len, head_dim, generator=gen)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v))


def assert_attention_close(got, want, out_tol: float, lse_tol: float, where: str) -> None:
    """got = (out, lse) of the code under test, want = attention_float64's; tolerances absolute."""
    (out, lse), (want_out, want_lse) = got, want
    assert out.shape == want_out.shape, f"{where}: out must be {list(want_out.shape)}, got {list(out.shape)}"
    assert lse.shape == want_lse.shape and lse.dtype == torch.float32, \
        f"{where}: lse must be float32 {list(want_lse.shape)}, got {lse.dtype} {list(lse.shape)}"
    err = (out.detach().cpu().double() - want_out).abs()
    worst_row = int(err.amax(-1).flatten().argmax()) % out.shape[2]
    assert err.max() <= out_tol, (
        f"{where}: out is off by up to {err.max():.2e} (allowed {out_tol:.1e}), worst at query row {worst_row}: "
        "check the rescaling of l and acc when the running max grows, and the causal mask on diagonal tiles")
    lse_err = (lse.detach().cpu().double() - want_lse).abs()
    assert lse_err.max() <= lse_tol, (
        f"{where}: lse is off by up to {lse_err.max():.2e} (row {int(lse_err.flatten().argmax()) % lse.shape[-1]}; "
        f"allowed {lse_tol:.0e}): lse must be log(sum_j exp(q.k_j / sqrt(d))) over the keys the row sees, natural log")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_tiled_attention_matches_float64(rng, causal):
    """float32 inputs, odd lengths and an odd block size, q_len < kv_len (a prefill after a cached prefix)."""
    batch, num_heads, head_dim = pick(rng, 1, 2), pick(rng, 1, 3), 2 * pick(rng, 4, 20)
    q_len = pick(rng, 20, 90)
    kv_len, block = q_len + pick(rng, 1, 40), pick(rng, 5, 19) | 1
    q, k, v = random_qkv(rng, batch, num_heads, q_len, kv_len, head_dim)
    inputs = [t.clone() for t in (q, k, v)]
    want = attention_float64(q, k, v, causal)
    got = impl.online_softmax.tiled_attention(q, k, v, causal=causal, block_size=block)
    assert all(torch.equal(a, b) for a, b in zip(inputs, (q, k, v))), "tiled_attention must not modify q, k, v"
    assert got[0].dtype == torch.float32, f"out must be in q's dtype (float32), got {got[0].dtype}"
    # float32 math over <= 130 keys: errors ~1e-6; a missed rescale or a wrong mask costs ~1e-1
    assert_attention_close(got, want, 1e-4, 1e-4, f"q_len {q_len}, kv_len {kv_len}, block {block}, causal {causal}")


def test_tiled_attention_is_stable_for_large_scores(rng):
    """Scores of several hundred: exp overflows float32 unless each tile subtracts the running max."""
    head_dim, q_len = 16, pick(rng, 20, 40)
    kv_len = q_len + pick(rng, 1, 30)
    q, k, v = random_qkv(rng, 1, 2, q_len, kv_len, head_dim, scale=12.0)         # |q.k| / 4 up to ~500
    k[..., -3:, :] *= 1.5                                             # the largest scores in the last tile
    want = attention_float64(q, k, v, True)
    got = impl.online_softmax.tiled_attention(q, k, v, causal=True, block_size=8)
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[1]).all(), \
        "out or lse is inf/nan for scores of several hundred: subtract the running max before exp"
    # lse of ~500 in float32: ulp 3e-5, plus rounding of the scores themselves
    assert_attention_close(got, want, 1e-3, 2e-2, f"scores up to {float(want[1].max()):.0f}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
def test_tiled_attention_returns_q_dtype_and_float32_lse(rng, dtype):
    q_len, kv_len = pick(rng, 9, 30), pick(rng, 31, 50)
    q, k, v = random_qkv(rng, 1, 2, q_len, kv_len, 24, dtype=dtype)
    want = attention_float64(q, k, v, True)
    out, lse = call_keeping_inputs(impl.online_softmax.tiled_attention, q, k, v, causal=True, block_size=7)
    assert out.dtype == dtype and lse.dtype == torch.float32, \
        f"expected out in {dtype} and lse in float32, got {out.dtype} and {lse.dtype}"
    tol = 2**-7 * 4 if dtype == torch.bfloat16 else 1e-9           # bf16: one rounding of out (|v| < ~4)
    assert_attention_close((out, lse), want, tol, 1e-4, f"{dtype}")


def test_tiled_attention_never_builds_a_full_score_matrix(rng):
    """No torch op inside tiled_attention may create a tensor near [batch, heads, q_len, kv_len] in size."""
    batch, num_heads, head_dim = 1, 2, 16
    q_len = pick(rng, 640, 720)
    q, k, v = random_qkv(rng, batch, num_heads, q_len, q_len, head_dim)
    with largest_new_tensor() as largest:
        impl.online_softmax.tiled_attention(q, k, v, causal=True, block_size=64)
    full = batch * num_heads * q_len * q_len
    assert largest.numel <= full / 16, (      # a [64, kv_len] strip of scores is over 1/12: tile the keys too
        f"tiled_attention created a {list(largest.shape)} tensor ({largest.numel:,} elements, "
        f"{largest.numel / full:.0%} of the [{q_len}, {q_len}] score matrices): keep one "
        "[block_size, block_size] tile of scores at a time")


def test_tiled_attention_rejects_bad_input():
    q, k = torch.zeros(1, 2, 5, 8), torch.zeros(1, 2, 7, 8)
    tiled = impl.online_softmax.tiled_attention
    assert tiled(q, k, k, causal=True, block_size=4)[0].shape == (1, 2, 5, 8)
    bad = [((q, torch.zeros(1, 2, 7, 6), torch.zeros(1, 2, 7, 6)), {}, "head_dim differs"),
           ((q, k, torch.zeros(1, 2, 6, 8)), {}, "k and v differ"),
           ((q, torch.zeros(1, 3, 7, 8), torch.zeros(1, 3, 7, 8)), {}, "num_heads differ"),
           ((q[0], k[0], k[0]), {}, "3-D"),
           ((k, q, q), {"causal": True}, "causal with q_len > kv_len"),
           ((q, k, k), {"block_size": 0}, "block_size 0")]
    for args, kwargs, what in bad:
        with pytest.raises(ValueError):
            tiled(*args, **kwargs)
            pytest.fail(f"tiled_attention accepted bad input ({what}); raise ValueError")
