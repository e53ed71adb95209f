"""inf02 tests: the roofline floor and bound, and the work of a phase counted against the model itself."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lab.cache import DynamicCache
from lab.config import SHAPES
from lab.hardware import Peaks
from lab.impl import Topic
from lab.testing import naive_attention, pick, raises, random_config, random_lab_model

impl = Topic("inf02")
H200 = Peaks("H200", copy_bytes_per_s=4.297e12, matmul_flops_per_s=673e12, matmul_dtype="bf16")


def uniform(rng, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=rng))


@pytest.mark.parametrize("side", ["memory", "compute"])
def test_roofline_estimate_is_the_slower_resource(rng, side):
    peaks = Peaks("fake", uniform(rng, 1e10, 5e12), uniform(rng, 1e12, 1e15), "bf16")
    ridge = peaks.matmul_flops_per_s / peaks.copy_bytes_per_s
    num_bytes = uniform(rng, 1e6, 1e11)
    intensity = ridge * (uniform(rng, 0.05, 0.95) if side == "memory" else uniform(rng, 1.05, 20))
    est = impl.roofline.roofline_estimate(intensity * num_bytes, num_bytes, peaks)
    floor = max(intensity * num_bytes / peaks.matmul_flops_per_s, num_bytes / peaks.copy_bytes_per_s)
    assert est.bound == side, (f"intensity {intensity:.3g} FLOP/B vs ridge {ridge:.3g}: expected {side}-bound, got "
                               f"{est.bound}")
    assert est.intensity == pytest.approx(intensity, rel=1e-9) and est.ridge == pytest.approx(ridge, rel=1e-9)
    assert est.predicted_s == pytest.approx(floor, rel=1e-9), (
        f"predicted_s: the slower of compute ({intensity * num_bytes / peaks.matmul_flops_per_s:.3g} s) and memory "
        f"({num_bytes / peaks.copy_bytes_per_s:.3g} s) is {floor:.3g} s; got {est.predicted_s:.3g} s")


@pytest.mark.parametrize("bad", [(-1.0, 1e6), (1e9, 0.0)], ids=["negative-flops", "zero-bytes"])
def test_roofline_rejects_bad_input(bad):
    with raises(ValueError,
                because=f"roofline_estimate(flops={bad[0]}, num_bytes={bad[1]}): flops must be >= 0 and bytes > 0"):
        impl.roofline.roofline_estimate(*bad, H200)


def test_phase_estimate_counts_what_the_model_does(rng):
    """FLOPs from torch's FlopCounterMode on the model; bytes from its weights and a cache's tensors."""
    config = random_config(rng)
    model = random_lab_model(config, rng, torch.bfloat16)
    model.attention = naive_attention
    batch, past_len, num_tokens = pick(rng, 1, 3), pick(rng, 0, 17), pick(rng, 1, 13)
    cache = DynamicCache(config, batch, past_len + num_tokens, dtype=torch.bfloat16)
    with torch.no_grad():
        if past_len:
            model(torch.randint(config.vocab_size, (batch, past_len), generator=rng), cache=cache)
        with FlopCounterMode(display=False) as counter:
            model(torch.randint(config.vocab_size, (batch, num_tokens), generator=rng), cache=cache)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    weights += sum(p.numel() for n, p in model.named_parameters() if n.endswith("norm.weight"))
    kv_values = sum(k[:, :, :past_len + num_tokens].numel() for k in cache.k + cache.v)
    est = impl.roofline.phase_estimate(config, num_tokens, H200, past_len=past_len, batch=batch, dtype_bytes=2)
    assert est.flops == counter.get_total_flops(), (
        f"batch {batch}, {num_tokens} new after {past_len} cached: the model ran {counter.get_total_flops():,} "
        f"matmul FLOPs, phase_estimate counts {est.flops:,}")
    assert est.num_bytes == 2 * (weights + kv_values), (
        f"bytes: {2 * weights:,} of weights and norms + {2 * kv_values:,} of K/V read and written = "
        f"{2 * (weights + kv_values):,}; got {est.num_bytes:,}")


def test_llama_phases_on_an_h200():
    """Llama-3-8B, bf16, on an H200's measured peaks: the lesson's numbers."""
    c, phase = SHAPES["llama-3-8b"], impl.roofline.phase_estimate
    decode = phase(c, 1, H200, past_len=2047)
    assert decode.bound == "memory" and decode.predicted_s == pytest.approx(3.56e-3, rel=0.02), \
        (f"batch-1 decode at 2k context: memory-bound, ~3.56 ms (15.3 GB at 4.3 TB/s); got {decode.bound}, "
         f"{decode.predicted_s * 1e3:.2f} ms")
    prefill = phase(c, 2048, H200)
    assert prefill.bound == "compute" and prefill.predicted_s == pytest.approx(48.9e-3, rel=0.02), \
        f"2,048-token prefill: compute-bound, ~48.9 ms; got {prefill.bound}, {prefill.predicted_s * 1e3:.1f} ms"
    assert phase(c, 1, H200, past_len=127, batch=256).bound == "compute", \
        "256 decodes at short context share each weight read: past the ridge, compute-bound"
    assert phase(c, 1, H200, past_len=8191, batch=256).bound == "memory", \
        "256 decodes at 8k context each read their own 1 GB of K/V: memory-bound again"
