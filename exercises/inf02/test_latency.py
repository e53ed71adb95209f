"""inf02 tests: TTFT and TBT, on a fake device whose clock is exact, and on a real decoder's tokens."""
import pytest
import torch

from lab.cache import DynamicCache
from lab.fake_clock import FakeDevice
from lab.impl import Topic
from lab.testing import ConcatCache, FakeCachedModel, ScriptedModel, pick, raises, random_config, random_lab_model

impl = Topic("inf02")


def fake_run(rng, prompt_len=None, num_new=None):
    prompt = torch.randint(3, 64, (prompt_len or pick(rng, 40, 90) | 1,), generator=rng).tolist()
    script = torch.randint(3, 64, (num_new or pick(rng, 4, 9),), generator=rng).tolist()
    dev = FakeDevice()
    model = FakeCachedModel(script, len(prompt), dev)
    timing = impl.latency.measure_latency(model, prompt, len(script), ConcatCache(1), clock=dev.clock,
                                          synchronize=dev.synchronize)
    return prompt, script, model, timing


def test_latency_feeds_the_prompt_once_then_one_token_per_step(rng):
    prompt, script, model, timing = fake_run(rng)
    assert timing.new_ids == script, f"tokens: expected the scripted {script}, got {timing.new_ids}"
    shapes = [list(ids.shape) for ids in model.calls]
    assert shapes == [[1, len(prompt)]] + [[1, 1]] * (len(script) - 1), (
        f"expected one prefill over the whole prompt [1, {len(prompt)}], then [1, 1] per decode step (the cache "
        f"holds the rest); the model was fed {shapes}")
    assert model.calls[0][0].tolist() == prompt, "the prefill must feed the prompt's tokens in order"
    for step, ids in enumerate(model.calls[1:]):
        assert int(ids) == script[step], f"decode step {step} must feed the token just generated ({script[step]})"


def test_latency_times_prefill_and_each_decode_step(rng):
    """Each forward: 0.5 ms of host time, then 4 ms + 0.2 ms per token of device work."""
    prompt, script, model, timing = fake_run(rng)
    ttft = model.host_s + model.base_s + model.per_token_s * len(prompt)
    tbt = model.host_s + model.base_s + model.per_token_s
    assert timing.ttft_s == pytest.approx(ttft, rel=1e-9), (
        f"TTFT: the prefill finishes {ttft * 1e3:.3f} ms after it starts, you measured {timing.ttft_s * 1e3:.3f} ms; "
        "call synchronize() right before every clock read (device work is queued, not done, when forward returns)")
    assert len(timing.tbt_s) == len(script) - 1, f"tbt_s needs {len(script) - 1} entries, got {len(timing.tbt_s)}"
    for i, seen in enumerate(timing.tbt_s):
        assert seen == pytest.approx(tbt, rel=1e-9), \
            f"tbt_s[{i}]: a one-token decode step takes {tbt * 1e3:.3f} ms, you measured {seen * 1e3:.3f} ms"


def test_latency_generates_what_greedy_generates(rng):
    """A real decoder with lab.cache.DynamicCache: the tokens of a no-cache greedy loop."""
    config = random_config(rng)
    model = random_lab_model(config, rng)
    prompt = torch.randint(config.vocab_size, (pick(rng, 5, 25) | 1,), generator=rng).tolist()
    num_new = pick(rng, 4, 9)
    ids, expected = torch.tensor([prompt]), []
    with torch.no_grad():
        for _ in range(num_new):
            expected.append(int(model(ids)[0, -1].argmax()))
            ids = torch.cat([ids, torch.tensor([[expected[-1]]])], dim=1)
    timing = impl.latency.measure_latency(model, prompt, num_new, DynamicCache(config, 1, len(prompt) + num_new))
    assert timing.new_ids == expected, f"greedy tokens: expected {expected}, got {timing.new_ids}"
    assert timing.ttft_s > 0 and all(t > 0 for t in timing.tbt_s), "times must be positive seconds"


@pytest.mark.parametrize("case", ["no-new-tokens", "empty-prompt"])
def test_latency_rejects_bad_input(case):
    dev = FakeDevice()
    model = FakeCachedModel([5, 6], 3, dev)
    prompt, num_new = ([1, 2, 3], 0) if case == "no-new-tokens" else ([], 2)
    with raises(ValueError,
                because=f"measure_latency({case}): a prompt of {len(prompt)} tokens and {num_new} new tokens has no "
                        "first token to time"):
        impl.latency.measure_latency(model, prompt, num_new, ConcatCache(1), clock=dev.clock,
                                     synchronize=dev.synchronize)


@pytest.mark.gpu
def test_latency_waits_for_the_gpu(rng):
    """Every forward queues ~20 ms of GPU work and returns at once: TTFT and TBT must include it."""

    class SlowGPUModel(ScriptedModel):
        def forward(self, input_ids, positions=None, cache=None, attention_mask=None, last_only=False):
            torch.cuda._sleep(int(4e7))
            logits = super().forward(input_ids, positions, cache, attention_mask, last_only)
            kv = torch.zeros(1, 1, input_ids.shape[1], 2, device="cuda")
            cache.update(0, kv, kv)
            return logits

    prompt = torch.randint(3, 64, (17,), generator=rng).tolist()
    model = SlowGPUModel([7, 8, 9], len(prompt)).cuda()
    timing = impl.latency.measure_latency(model, prompt, 3, ConcatCache(1))
    assert timing.ttft_s > 0.010 and min(timing.tbt_s) > 0.010, \
        (f"TTFT {timing.ttft_s * 1e3:.2f} ms, TBT {[round(t * 1e3, 2) for t in timing.tbt_s]} ms for ~20 ms of GPU "
         "work each")
