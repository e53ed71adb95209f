"""inf14 tests: LLM.int8()'s outlier decomposition.

Oracles: bitsandbytes' Linear8bitLt (threshold 6.0, int8 weights) on the same int8 weights; the float64
product with the rounding bound of the regular columns (the outlier columns must be exact).
"""
import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick

impl = Topic("inf14")
THRESHOLD = 6.0


def activations_with_outlier_features(rng, m: int, k: int, num_outliers: int):
    """x [m, k] ~ N(0, 1) whose `num_outliers` feature columns hold magnitudes 8..38 in every token, as
    the systematic outlier features of large models do (Dettmers et al., 2022, section 4)."""
    x = torch.randn(m, k, generator=rng).clamp(-5, 5)                 # regular features stay under 6
    cols = torch.randperm(k, generator=rng)[:num_outliers].sort().values
    signs = torch.where(torch.rand(m, num_outliers, generator=rng) < 0.5, -1.0, 1.0)
    x[:, cols] = (8 + 30 * torch.rand(m, num_outliers, generator=rng)) * signs
    return x.half().float(), cols                                     # fp16-exact: bitsandbytes casts to fp16


def random_int8_weight(rng, n: int, k: int):
    w = torch.randn(n, k, generator=rng) / k**0.5
    scale = w.abs().amax(1) / 127
    return torch.round(w / scale[:, None]).to(torch.int8), scale


def test_outlier_columns_are_those_with_a_value_over_the_threshold(rng):
    m, k = pick(rng, 3, 20), pick(rng, 40, 200) | 1
    x, cols = activations_with_outlier_features(rng, m, k, pick(rng, 1, 5))
    lone = int(torch.randint(k, (1,), generator=rng))
    x[pick(rng, 0, m - 1), lone] = -7.5                # one token over the threshold makes its column an outlier
    want = sorted(set(cols.tolist()) | {lone})
    got = impl.llm_int8.outlier_columns(x, THRESHOLD)
    assert isinstance(got, torch.Tensor) and got.tolist() == want, \
        f"expected outlier columns {want} (any token with |x| >= {THRESHOLD}), got {got}"
    assert impl.llm_int8.outlier_columns(x.clamp(-5, 5), THRESHOLD).numel() == 0, \
        "with every |x| < threshold there is no outlier column (an empty tensor)"


def llm_int8_keeping_inputs(x, wq, w_scale, threshold=THRESHOLD):
    """llm_int8_matmul(x, wq, w_scale, threshold), failing if it changed any input: the oracles below are
    computed from the same tensors after the call, so a changed x would move the oracle with the answer."""
    return call_keeping_inputs(impl.llm_int8.llm_int8_matmul, x, wq, w_scale, threshold)


def test_llm_int8_keeps_outlier_columns_exact(rng):
    """Outlier columns in float, the rest int8 per token: the error stays within the rounding bound of the
    *regular* columns, while quantizing every column per token is ~10x worse here."""
    m, n, k = pick(rng, 3, 33), pick(rng, 20, 60) | 1, pick(rng, 100, 400) | 1
    x, cols = activations_with_outlier_features(rng, m, k, pick(rng, 2, 6))
    wq, w_scale = random_int8_weight(rng, n, k)
    got = llm_int8_keeping_inputs(x, wq, w_scale)
    assert got.shape == (m, n) and got.dtype == x.dtype, (f"expected {x.dtype} [{m}, {n}], got {got.dtype} "
                                                          f"{list(got.shape)}")
    w = wq.double() * w_scale.double()[:, None]                       # the weight the int8 codes stand for
    regular = torch.ones(k, dtype=torch.bool)
    regular[cols] = False
    x_reg = x.double() * regular
    step = x_reg.abs().amax(1, keepdim=True) / 127                    # per-token scale of the regular part
    bound = step / 2 * (w.abs() * regular).sum(1) * 1.001 + 1e-5 * (x.double().abs() @ w.abs().t())
    err = (got.double() - x.double() @ w.t()).abs()
    assert (err <= bound).all(), (
        f"error up to {(err / bound).max():.1f}x the rounding bound of the regular columns: keep the outlier "
        f"columns {cols.tolist()} out of the int8 part (zero them before quantizing per token) and add them "
        "back in float with the dequantized weight columns")
    # Round-to-nearest errs uniformly within half a step, so the rms error is about step / sqrt(12) times
    # the norm of the regular weights; plain per-token W8A8 (no decomposition) is ~8x that here.
    expected = ((step**2 / 12) * (w**2 * regular).sum(1)).mean().sqrt().item()
    ratio = err.pow(2).mean().sqrt().item() / expected
    assert ratio <= 1.5, (f"rms error {ratio:.1f}x what rounding the regular columns alone gives: the outliers "
                          "must not set the per-token scales (quantize x with the outlier columns zeroed)")


def test_llm_int8_matches_bitsandbytes(rng):
    try:
        import bitsandbytes as bnb
    except Exception as error:        # ImportError, or a broken native library
        pytest.fail(f"the package bitsandbytes, this test's oracle, is missing or broken here ({error}): "
                    "pip install bitsandbytes (it runs LLM.int8() on a CPU)", pytrace=False)
    m, n, k = pick(rng, 3, 33), pick(rng, 20, 60) | 1, pick(rng, 100, 400) | 1
    x, cols = activations_with_outlier_features(rng, m, k, pick(rng, 2, 6))
    linear = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=rng) / k**0.5)
    oracle = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=THRESHOLD)
    oracle.load_state_dict(linear.state_dict())
    oracle = oracle.to("cpu").eval()                 # quantizes the weight; eval: LLM.int8() on a CPU too
    wq, w_scale = oracle.weight.data, oracle.weight.SCB.float() / 127
    with torch.no_grad():
        want = oracle(x).double()
    got = llm_int8_keeping_inputs(x, wq, w_scale).double()
    exact = x.double() @ (wq.double() * w_scale.double()[:, None]).t()
    rms = lambda t: t.pow(2).mean().sqrt().item()                      # noqa: E731
    # Both round the same regular values on the same per-token grid; they may differ by one code where
    # float16 (bitsandbytes) and float32 arithmetic round a near-tie apart: measured < 7% of the
    # quantization error itself; allow 25%. Missing outliers cost ~400x, no decomposition ~10x.
    assert rms(got - want) <= 0.25 * rms(want - exact) + 1e-6, (
        f"differs from bitsandbytes Linear8bitLt by {rms(got - want):.2e} rms, while bitsandbytes is "
        f"{rms(want - exact):.2e} rms from the exact product (outlier columns {cols.tolist()})")
