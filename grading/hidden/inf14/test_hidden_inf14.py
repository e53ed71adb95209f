"""inf14 hidden tests: quantizers on half-precision rows with negative maxima and single columns, an int32
accumulation over a very long K for one token, W8A8 on a single token, LLM.int8() at other thresholds."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import pick

from exercises.inf14.test_llm_int8 import llm_int8_keeping_inputs

impl = Topic("inf14")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_hidden_per_channel_codes_of_half_rows_with_negative_maxima(rng, dtype):
    """Half-precision rows of many sizes whose largest |w| is negative, a one-column weight, a zero row."""
    for n, k in ((pick(rng, 9, 40) | 1, pick(rng, 20, 90) | 1), (pick(rng, 3, 9), 1)):
        w = torch.randn(n, k, generator=rng) * torch.logspace(-2, 2, n)[torch.randperm(n, generator=rng)][:, None]
        w = w.to(dtype)
        peak = w.float().abs().argmax(dim=1)
        w[torch.arange(n), peak] = -w[torch.arange(n), peak].abs()               # every row's max |w| negative
        w[pick(rng, 0, n - 1)] = 0
        q, scale = impl.quantize.quantize_per_channel(w)
        amax = w.double().abs().amax(1)
        want_scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        nonzero = amax > 0
        assert q.dtype == torch.int8 and q.shape == (n, k) and scale.shape == (n,) and scale.dtype == torch.float32
        assert torch.allclose(scale.double()[nonzero], want_scale[nonzero], rtol=1e-6), \
            f"[{n}, {k}] {dtype}: each row's scale must be its own max |w| / 127"
        assert (q[torch.arange(n), peak][nonzero] == -127).all(), "each row's negative peak must land on code -127"
        off = (q.double() - w.double() / want_scale[:, None]).abs()
        assert off.max() <= 0.5 + 1e-4, f"[{n}, {k}] {dtype}: a code is {off.max():.3f} steps from w / scale"
        assert (q[~nonzero] == 0).all(), "a row of zeros must get codes 0"


def test_hidden_int8_matmul_one_token_over_a_very_long_k(rng):
    """One token (M = 1) and K past 5,000 at full scale: sums of ~8e7, exact in int32 only."""
    n, k = pick(rng, 3, 9) | 1, pick(rng, 5000, 6000) | 1
    xq = torch.randint(-127, 128, (1, k), generator=rng, dtype=torch.int8)
    wq = torch.randint(-127, 128, (n, k), generator=rng, dtype=torch.int8)
    xq[0, : k - 3] = 127
    wq[0, : k - 5] = 127
    wq[1] = torch.where(torch.arange(k) % 3 == 0, -127, 127).to(torch.int8)
    got = impl.int8_matmul.int8_matmul(xq, wq)
    want = xq.long() @ wq.long().t()
    assert got.dtype == torch.int32 and got.shape == (1, n), (f"expected int32 [1, {n}], got {got.dtype} "
                                                              f"{list(got.shape)}")
    assert torch.equal(got.long(), want), f"sums {got.tolist()} differ from the exact {want.tolist()} (K = {k})"


def test_hidden_w8a8_single_token_against_float64(rng):
    """One token at a time and a whole batch, bf16 output: within the per-token x per-channel rounding bound."""
    n, k = pick(rng, 30, 80) | 1, pick(rng, 64, 500) | 1
    w = torch.randn(n, k, generator=rng) * torch.logspace(-3, 0, n)[torch.randperm(n, generator=rng)][:, None]
    wq, w_scale = impl.quantize.quantize_per_channel(w)
    for m in (1, pick(rng, 5, 17)):
        x = torch.randn(m, k, generator=rng) * torch.logspace(-1, 1, m)[:, None]
        xq, x_scale = impl.quantize.quantize_per_token(x)
        got = impl.int8_matmul.w8a8_matmul(xq, x_scale, wq, w_scale, out_dtype=torch.bfloat16)
        assert got.dtype == torch.bfloat16 and got.shape == (m, n)
        xd, wd = x.double(), w.double()
        sx, sw = xd.abs().amax(1, keepdim=True) / 127, wd.abs().amax(1) / 127
        exact = xd @ wd.t()
        bound = xd.abs().sum(1, keepdim=True) * sw / 2 + sx / 2 * wd.abs().sum(1) + k * sx * sw / 4
        bound = bound * 1.001 + 2**-8 * exact.abs() + 1e-6 * (xd.abs() @ wd.abs().t())      # + one bf16 rounding
        over = (got.double() - exact).abs() / bound
        assert over.max() <= 1, f"M = {m}: W8A8 error is {over.max():.1f}x the rounding bound of its scales"


def test_hidden_llm_int8_matches_bitsandbytes_at_a_lower_threshold(rng):
    """bitsandbytes' Linear8bitLt at threshold 3.5 (not 6.0), on activations whose outlier features (4..24)
    sit closer to the regular ones (|x| <= 3), with fewer tokens and columns."""
    threshold = 3.5
    try:
        import bitsandbytes as bnb
    except Exception as error:
        pytest.fail(f"the package bitsandbytes, this test's oracle, is missing or broken here ({error}): "
                    "pip install bitsandbytes", pytrace=False)
    m, n, k = pick(rng, 2, 21), pick(rng, 20, 50) | 1, pick(rng, 120, 300) | 1
    x = torch.randn(m, k, generator=rng).clamp(-3, 3)
    cols = torch.randperm(k, generator=rng)[:pick(rng, 3, 7)]
    x[:, cols] = (4 + 20 * torch.rand(m, len(cols), generator=rng)) * torch.where(
        torch.rand(m, len(cols), generator=rng) < 0.5, -1.0, 1.0)
    x = x.half().float()
    linear = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=rng) / k**0.5)
    oracle = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=threshold)
    oracle.load_state_dict(linear.state_dict())
    oracle = oracle.to("cpu").eval()
    wq, w_scale = oracle.weight.data, oracle.weight.SCB.float() / 127
    with torch.no_grad():
        want = oracle(x).double()
    got = llm_int8_keeping_inputs(x, wq, w_scale, threshold).double()
    assert got.shape == (m, n)
    exact = x.double() @ (wq.double() * w_scale.double()[:, None]).t()
    rms = lambda t: t.pow(2).mean().sqrt().item()                      # noqa: E731
    assert rms(got - want) <= 0.25 * rms(want - exact) + 1e-6, (
        f"threshold {threshold}: differs from bitsandbytes by {rms(got - want):.2e} rms, while bitsandbytes is "
        f"{rms(want - exact):.2e} rms from the exact product")
    want_cols = torch.nonzero((x.abs() >= threshold).any(0)).flatten().tolist()
    assert impl.llm_int8.outlier_columns(x, threshold).tolist() == want_cols
