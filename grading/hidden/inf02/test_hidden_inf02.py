"""inf02 hidden tests: chunked prefill, the roofline and the latency timer on other shapes, sizes and settings."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lab.cache import DynamicCache
from lab.fake_clock import FakeDevice
from lab.hardware import Peaks
from lab.impl import Topic
from lab.testing import ConcatCache, FakeCachedModel, naive_attention, pick, random_config, random_lab_model

impl = Topic("inf02")


def uniform(rng, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=rng))


def test_hidden_chunked_prefill_gqa_batch_after_prefix(rng):
    """GQA with 4 query heads per KV head, batch 4, a cached prefix, a chunk size that does not divide the prompt."""
    kv_heads = pick(rng, 1, 2)
    config = random_config(rng, num_kv_heads=kv_heads, num_heads=4 * kv_heads, num_layers=2)
    model = random_lab_model(config, rng)
    batch, prompt_len, prefix_len = 4, pick(rng, 20, 40) | 1, pick(rng, 1, 6)
    chunk_size = pick(rng, 3, 8)
    if prompt_len % chunk_size == 0:
        prompt_len += 2
    ids = torch.randint(config.vocab_size, (batch, prompt_len), generator=rng)
    prefix = torch.randint(config.vocab_size, (batch, prefix_len), generator=rng)
    total = prefix_len + prompt_len
    want_cache = DynamicCache(config, batch, total)
    with torch.no_grad():
        model(prefix, cache=want_cache)
        want = model(ids, cache=want_cache)
    cache = DynamicCache(config, batch, total)
    with torch.no_grad():
        model(prefix, cache=cache)
    fed = []
    model.register_forward_pre_hook(lambda module, args, kwargs: fed.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    got = impl.chunked_prefill.chunked_prefill(model, ids, cache, chunk_size)
    expected_fed = [chunk_size] * (prompt_len // chunk_size) + [prompt_len % chunk_size]
    assert fed == expected_fed, (f"{prompt_len} tokens in chunks of {chunk_size}: expected forwards of {expected_fed}, "
                                 f"got {fed}")
    err = (got - want).abs().max().item()
    assert err < 1e-4, f"after {prefix_len} cached tokens, chunks of {chunk_size}: logits differ by up to {err:.2e}"
    assert cache.seq_len == total, f"the cache should hold {total} tokens, holds {cache.seq_len}"
    for layer, (k, v, k_ref, v_ref) in enumerate(zip(cache.k, cache.v, want_cache.k, want_cache.v)):
        kv_err = max((k[:, :, :total] - k_ref[:, :, :total]).abs().max().item(),
                     (v[:, :, :total] - v_ref[:, :, :total]).abs().max().item())
        assert kv_err < 1e-4, f"layer {layer} K/V differ from one-shot prefill by up to {kv_err:.2e}"


def test_hidden_phase_estimate_float32_batched_decode(rng):
    """float32 (4-byte) weights and cache, a batched decode step after a long context, on another machine."""
    config = random_config(rng)
    model = random_lab_model(config, rng)
    model.attention = naive_attention
    batch, past_len, num_tokens = pick(rng, 2, 5), pick(rng, 20, 60), 1
    cache = DynamicCache(config, batch, past_len + num_tokens)
    with torch.no_grad():
        model(torch.randint(config.vocab_size, (batch, past_len), generator=rng), cache=cache)
        with FlopCounterMode(display=False) as counter:
            model(torch.randint(config.vocab_size, (batch, num_tokens), generator=rng), cache=cache)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    weights += sum(p.numel() for n, p in model.named_parameters() if n.endswith("norm.weight"))
    kv_values = sum(k[:, :, :past_len + num_tokens].numel() for k in cache.k + cache.v)
    peaks = Peaks("fake", uniform(rng, 1e10, 5e12), uniform(rng, 1e12, 1e15), "fp32")
    est = impl.roofline.phase_estimate(config, num_tokens, peaks, past_len=past_len, batch=batch, dtype_bytes=4)
    assert est.flops == counter.get_total_flops(), \
        (f"batch {batch} decode after {past_len}: the model ran {counter.get_total_flops():,} FLOPs, you count "
         f"{est.flops:,}")
    assert est.num_bytes == 4 * (weights + kv_values), \
        (f"bytes at 4 per value: {4 * (weights + kv_values):,} (weights, norms, K/V read and written); got "
         f"{est.num_bytes:,}")
    floor = max(est.flops / peaks.matmul_flops_per_s, est.num_bytes / peaks.copy_bytes_per_s)
    assert est.predicted_s == pytest.approx(floor, rel=1e-9), (f"predicted_s: the slower resource, {floor:.3g} s; got "
                                                               f"{est.predicted_s:.3g} s")


@pytest.mark.parametrize("case", ["one-token-prompt", "one-new-token"])
def test_hidden_latency_edge_lengths(rng, case):
    """A one-token prompt with many new tokens, and a long prompt with max_new_tokens=1 (no TBT at all)."""
    prompt_len, num_new = (1, pick(rng, 10, 16)) if case == "one-token-prompt" else (pick(rng, 100, 200) | 1, 1)
    prompt = torch.randint(3, 64, (prompt_len,), generator=rng).tolist()
    script = torch.randint(3, 64, (num_new,), generator=rng).tolist()
    dev = FakeDevice()
    model = FakeCachedModel(script, prompt_len, dev, host_s=0.001 * uniform(rng, 0.1, 1),
                            base_s=0.001 * uniform(rng, 1, 9), per_token_s=0.001 * uniform(rng, 0.05, 0.5))
    timing = impl.latency.measure_latency(model, prompt, num_new, ConcatCache(1), clock=dev.clock,
                                          synchronize=dev.synchronize)
    assert timing.new_ids == script, f"tokens: expected the scripted {script}, got {timing.new_ids}"
    shapes = [list(ids.shape) for ids in model.calls]
    assert shapes == [[1, prompt_len]] + [[1, 1]] * (num_new - 1), f"the model was fed {shapes}"
    ttft = model.host_s + model.base_s + model.per_token_s * prompt_len
    tbt = model.host_s + model.base_s + model.per_token_s
    assert timing.ttft_s == pytest.approx(ttft, rel=1e-9), (f"TTFT: expected {ttft * 1e3:.3f} ms, got "
                                                            f"{timing.ttft_s * 1e3:.3f} ms")
    assert len(timing.tbt_s) == num_new - 1, f"tbt_s needs {num_new - 1} entries, got {len(timing.tbt_s)}"
    assert timing.tbt_s == pytest.approx([tbt] * (num_new - 1), rel=1e-9), f"each decode step takes {tbt * 1e3:.3f} ms"
