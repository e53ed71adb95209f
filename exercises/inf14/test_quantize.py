"""inf14 tests: symmetric int8 quantization, per output channel (weights) and per token (activations).

The oracle is the definition computed in float64: scale = absmax / 127 per row, codes = round(x / scale).
"""
import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick, raises

impl = Topic("inf14")


def rows_of_many_magnitudes(rng, num_rows: int, num_cols: int) -> torch.Tensor:
    """Rows whose sizes span four decades (as real weight rows do, less extremely): a per-tensor scale
    rounds the small rows to almost nothing, a per-row scale does not. One row is all zeros."""
    x = torch.randn(num_rows, num_cols, generator=rng)
    x *= torch.logspace(-3, 1, num_rows)[torch.randperm(num_rows, generator=rng)][:, None]
    x[pick(rng, 0, num_rows - 1)] = 0
    return x


def oracle_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 scales [rows] and (unrounded) scaled values x / scale [rows, cols]."""
    amax = x.double().abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    return scale, x.double() / scale[..., None]


def check_codes(q, scale, x, what: str) -> None:
    want_scale, scaled = oracle_codes(x)
    assert q.dtype == torch.int8 and q.shape == x.shape, \
        f"{what}: codes must be int8 of shape {list(x.shape)}, got {q.dtype} {list(q.shape)}"
    assert scale.dtype == torch.float32, f"{what}: scales must be float32, got {scale.dtype}"
    nonzero = x.abs().amax(dim=-1) > 0
    assert torch.allclose(scale.double().reshape(want_scale.shape)[nonzero], want_scale[nonzero], rtol=1e-6), \
        f"{what}: each row's scale must be its own max |x| / 127 (largest row error " \
        f"{(scale.double().reshape(want_scale.shape) / want_scale - 1)[nonzero].abs().max():.2e} relative)"
    assert int(q.abs().max()) <= 127, f"{what}: codes must stay in [-127, 127], got {int(q.min())}..{int(q.max())}"
    # Rounding to nearest: within half a step of x / scale (float32 arithmetic may flip exact ties).
    off = (q.double() - scaled).abs()
    assert off.max() <= 0.5 + 1e-4, f"{what}: a code is {off.max():.3f} steps from x / scale; round to the " \
                                     "nearest code (torch.round), after dividing by the row's own scale"
    assert (q[~nonzero] == 0).all(), f"{what}: a row of zeros must get codes 0"


def test_per_channel_scales_are_each_rows_absmax_over_127(rng):
    n, k = pick(rng, 20, 60) | 1, pick(rng, 30, 200) | 1
    w = rows_of_many_magnitudes(rng, n, k)
    q, scale = call_keeping_inputs(impl.quantize.quantize_per_channel, w)     # check_codes reads w after
    assert scale.shape == (n,), f"one scale per output channel: expected shape [{n}], got {list(scale.shape)}"
    check_codes(q, scale, w, f"quantize_per_channel on [{n}, {k}]")
    assert q.abs().amax(dim=1)[w.abs().amax(dim=1) > 0].eq(127).all(), \
        "the largest |w| of each row must land on code ±127 (scale = absmax / 127, not / 128)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_per_channel_round_trip_errs_at_most_half_a_step(rng, dtype):
    """|w - dequantize(quantize(w))| <= scale / 2 for every element, scale = its row's absmax / 127."""
    n, k = pick(rng, 20, 60) | 1, pick(rng, 30, 200) | 1
    w = rows_of_many_magnitudes(rng, n, k).to(dtype)
    q, scale = call_keeping_inputs(impl.quantize.quantize_per_channel, w)
    back = call_keeping_inputs(impl.quantize.dequantize_per_channel, q, scale)
    assert back.shape == w.shape and back.dtype == torch.float32, \
        f"dequantize_per_channel: expected float32 {list(w.shape)}, got {back.dtype} {list(back.shape)}"
    want_scale, _ = oracle_codes(w)
    err = (back.double() - w.double()).abs() / want_scale[:, None]
    worst = err.max().item()
    assert worst <= 0.5 + 1e-4, (
        f"round trip off by {worst:.2f} steps of the row's own scale (at most 0.5 for round-to-nearest). "
        "A per-tensor scale, a divisor of 128 or truncation instead of rounding all break this bound")
    assert impl.quantize.dequantize_per_channel(q, scale, torch.bfloat16).dtype == torch.bfloat16


def test_per_token_scales_are_dynamic_and_per_row(rng):
    batch, tokens, k = pick(rng, 1, 3), pick(rng, 3, 17) | 1, pick(rng, 30, 200) | 1
    x = torch.randn(batch, tokens, k, generator=rng) * 3
    q, scale = call_keeping_inputs(impl.quantize.quantize_per_token, x)
    assert scale.shape == (batch, tokens, 1), \
        f"one scale per token, kept as [..., 1]: expected {[batch, tokens, 1]}, got {list(scale.shape)}"
    check_codes(q.reshape(-1, k), scale.reshape(-1), x.reshape(-1, k), "quantize_per_token")
    # One token with a 100x larger value changes that token's scale only.
    louder = x.clone()
    louder[0, 1, 0] = 100 * x.abs().max()
    q2, scale2 = call_keeping_inputs(impl.quantize.quantize_per_token, louder)
    others = torch.ones(batch, tokens, dtype=torch.bool)
    others[0, 1] = False
    assert torch.equal(q2[others], q[others]) and torch.equal(scale2[others], scale[others]), \
        "a large value in one token changed other tokens' codes: the scale must be per token (row), not per tensor"
    assert scale2[0, 1, 0] > 50 * scale[0, 1, 0], "the loud token's scale must grow with its largest value"


def test_quantizers_reject_bad_input():
    impl.quantize.quantize_per_channel(torch.randn(3, 4))                    # valid input works...
    impl.quantize.quantize_per_token(torch.randn(3, 4))
    with raises(ValueError,
                because="quantize_per_channel of a 1-D tensor: weights are [N, "
                        "K]"):                                           # ...bad input says why
        impl.quantize.quantize_per_channel(torch.randn(7))                   # not [N, K]
    with raises(ValueError, because="quantize_per_channel of int8 values: the input must be floating point"):
        impl.quantize.quantize_per_channel(torch.ones(3, 4, dtype=torch.int8))
    with raises(ValueError, because="quantize_per_token of int32 values: the input must be floating point"):
        impl.quantize.quantize_per_token(torch.ones(3, 4, dtype=torch.int32))
