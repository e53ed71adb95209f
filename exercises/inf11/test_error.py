"""inf11 tests: logit error and KL divergence against fp32, on random logits and on the real model.

Oracles: the same measures written out in float64 here; `lab.eval.kl_divergence`; the fp32 real model.
"""
import pytest
import torch

from lab.eval import kl_divergence, top1_agreement
from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick, raises

impl = Topic("inf11")


def reference_error(ref: torch.Tensor, got: torch.Tensor) -> dict:
    ref, got = ref.double(), got.double()
    p_log, q_log = torch.log_softmax(ref, -1), torch.log_softmax(got, -1)
    return {"max_abs": (got - ref).abs().max().item(), "mean_abs": (got - ref).abs().mean().item(),
            "kl": (p_log.exp() * (p_log - q_log)).sum(-1).mean().item(),
            "top1": (ref.argmax(-1) == got.argmax(-1)).double().mean().item()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_logit_error_matches_a_float64_reference(rng, dtype):
    """Odd shapes, logits of a realistic scale, the second set rounded to `dtype` after some noise."""
    shape = (pick(rng, 1, 3), pick(rng, 3, 17), 2 * pick(rng, 200, 2000) + 1)
    ref = 4 * torch.randn(shape, generator=rng)
    got = (ref + 0.3 * torch.randn(shape, generator=rng)).to(dtype)
    want = reference_error(ref, got)                # before the call: the oracle never sees what it did
    err = call_keeping_inputs(impl.error.logit_error, ref, got)
    assert set(err) >= set(want), f"logit_error must return the keys {sorted(want)}, got {sorted(err)}"
    for key, value in want.items():
        assert isinstance(err[key], float), f"{key}: return a Python float, got {type(err[key]).__name__}"
        assert err[key] == pytest.approx(value, rel=1e-6, abs=1e-12), (
            f"{key} for {dtype} logits {list(shape)}: expected {value:.6g}, got {err[key]:.6g}"
            + (" (KL(p_ref || p): the reference distribution weighs the log ratio)" if key == "kl" else ""))


def test_kl_resolves_tiny_differences_in_float64(rng):
    """Two nearly equal distributions over 49,153 tokens: a KL of ~1e-9 that float32 arithmetic cannot see."""
    ref = 5 * torch.randn(3, 49153, generator=rng, dtype=torch.float64)
    got = ref + 1e-4 * torch.randn(3, 49153, generator=rng, dtype=torch.float64)
    want = reference_error(ref, got)["kl"]
    kl = impl.error.logit_error(ref, got)["kl"]
    assert kl == pytest.approx(want, rel=1e-3), \
        f"expected KL {want:.4g}; got {kl:.4g} (compute log-softmax and the sum in float64)"
    same = impl.error.logit_error(ref, ref.clone())
    assert same["kl"] == 0 and same["max_abs"] == 0 and same["top1"] == 1, f"identical logits: {same}"
    with raises(ValueError, because="logit_error of logits whose shapes differ (one vocabulary entry fewer)"):
        impl.error.logit_error(ref, ref[:, :-1])


def test_fp16_is_closer_to_fp32_than_bf16_on_the_real_model(real_model):
    """fp16 keeps 11 significant bits, bf16 8: on the real model's logits, fp16's KL must be far smaller."""
    from lab.data import eval_token_ids
    ids = torch.tensor([eval_token_ids(max_tokens=48)])
    with torch.inference_mode():
        ref = real_model(ids)[0]
        logits = {dtype: impl.cast.cast_model(real_model, dtype)(ids)[0] for dtype in (torch.float16, torch.bfloat16)}
    err = {dtype: impl.error.logit_error(ref, out) for dtype, out in logits.items()}
    for dtype, e in err.items():                          # the measures agree with the lab's own
        assert e["kl"] == pytest.approx(kl_divergence(ref, logits[dtype]), rel=1e-6)
        assert e["top1"] == pytest.approx(top1_agreement(ref, logits[dtype]))
    fp16, bf16 = err[torch.float16], err[torch.bfloat16]
    summary = f"fp16 {fp16}, bf16 {bf16}"
    # Measured on these 48 tokens: KL fp16 2.7e-5, bf16 1.3e-3 (3 fewer mantissa bits -> ~50x).
    assert 1e-7 < fp16["kl"] < 5e-4, f"fp16's KL against fp32 should be ~1e-5: {summary}"
    assert 1e-4 < bf16["kl"] < 2e-2, f"bf16's KL against fp32 should be ~1e-3: {summary}"
    assert fp16["kl"] * 5 < bf16["kl"] and fp16["max_abs"] < bf16["max_abs"], \
        f"fp16 (11 significant bits) should be well closer to fp32 than bf16 (8): {summary}"
    assert bf16["top1"] > 0.9, f"bf16 should still agree with fp32 on the top token > 90% of the time: {summary}"
