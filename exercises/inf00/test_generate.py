"""inf00 tests: greedy generation without a cache, and timing prefill apart from decode."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import ScriptedModel, SleepyModel, call_keeping_inputs

impl = Topic("inf00")


def random_prompt(rng: torch.Generator, vocab_size: int, lo: int = 5, hi: int = 31) -> list[int]:
    length = int(torch.randint(lo, hi + 1, (1,), generator=rng)) | 1        # odd lengths
    return torch.randint(0, vocab_size, (length,), generator=rng).tolist()


def test_greedy_matches_transformers(real_model, tokenizer, rng):
    """The real model, greedy, 12 tokens: identical to transformers' generate on the same weights."""
    from lab.data import PROMPTS
    from lab.oracle import hf_greedy
    text = PROMPTS[int(torch.randint(len(PROMPTS), (1,), generator=rng))]
    for prompt in (tokenizer.encode(text), random_prompt(rng, tokenizer.vocab_size)):
        # first, so that a stub fails fast; the oracle reads `prompt` after, so the call must leave it alone
        got = call_keeping_inputs(impl.generate.greedy_generate, real_model, prompt, max_new_tokens=12)
        expected = hf_greedy(prompt, max_new_tokens=12)
        assert isinstance(got, list) and all(isinstance(t, int) for t in got), \
            f"greedy_generate must return a list of ints, got {type(got).__name__} of {got[:3]!r}..."
        step = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        assert got == expected, (f"prompt {prompt[:8]}... ({len(prompt)} tokens): tokens differ from transformers "
                                 f"at step {step}: expected {expected}, got {got}")


def test_greedy_feeds_the_whole_sequence_each_step(rng):
    """No cache here: every step must see prompt + all tokens generated so far."""
    prompt = random_prompt(rng, 64)
    script = torch.randint(3, 64, (9,), generator=rng).tolist()
    model = ScriptedModel(script, len(prompt))
    got = call_keeping_inputs(impl.generate.greedy_generate, model, prompt, max_new_tokens=len(script))
    assert got == script, f"expected the scripted tokens {script}, got {got}"
    assert len(model.calls) == len(script), f"expected one forward per token ({len(script)}), saw {len(model.calls)}"
    for step, ids in enumerate(model.calls):
        want = prompt + script[:step]
        assert ids.shape == (1, len(want)) and ids[0].tolist() == want, \
            f"step {step}: the model should get the {len(want)} tokens so far as [1, T], got shape {list(ids.shape)}"


@pytest.mark.parametrize("where", ["first", "middle", "absent"])
def test_greedy_stops_after_eos_and_at_max_tokens(rng, where):
    prompt = random_prompt(rng, 64)
    eos = 2
    script = torch.randint(3, 64, (11,), generator=rng).tolist()
    at = {"first": 0, "middle": 5, "absent": None}[where]
    if at is not None:
        script[at] = eos
    want = script[: at + 1] if at is not None else script[:8]
    got = call_keeping_inputs(impl.generate.greedy_generate, ScriptedModel(script, len(prompt)), prompt, 8,
                              eos_token_id=eos)
    assert got == want, f"eos {where}: expected {want} (eos included, at most 8 tokens), got {got}"
    assert impl.generate.greedy_generate(ScriptedModel(script, len(prompt)), prompt, 0) == [], \
        "max_new_tokens=0 must give []"


def test_timed_generate_separates_prefill_from_decode(rng):
    """A model whose forward sleeps 4 ms + 0.5 ms per token: TTFT and each step must show its forwards' time.

    The oracle is each forward's own duration as the model measured it (a loaded machine oversleeps: a
    nominal 30 ms slept 70 ms in a seed sweep under load, and the student's clock saw it too)."""
    prompt = random_prompt(rng, 64, lo=41, hi=61)
    script = torch.randint(3, 64, (6,), generator=rng).tolist()
    model = SleepyModel(script, len(prompt), 0.004, 0.0005)
    timing = impl.generate.timed_generate(model, prompt, len(script))
    assert timing.new_ids == script, f"tokens: expected {script}, got {timing.new_ids}"
    assert len(timing.step_s) == len(script) - 1, \
        f"step_s needs one entry per token after the first ({len(script) - 1}), got {len(timing.step_s)}"
    assert len(model.forward_s) == len(script), \
        f"{len(script)} tokens without a cache take {len(script)} forwards, the model ran {len(model.forward_s)}"
    got = [timing.ttft_s] + list(timing.step_s)
    for i, (took, seen) in enumerate(zip(model.forward_s, got)):
        what = "ttft_s" if i == 0 else f"step_s[{i - 1}]"
        assert took * 0.95 <= seen <= took * 1.6 + 0.004, \
            f"{what}: its forward took {took * 1e3:.1f} ms (timed inside the model), you measured {seen * 1e3:.1f} ms"


@pytest.mark.gpu
def test_timed_generate_waits_for_the_gpu(rng):
    """A GPU forward that queues ~20 ms of work returns at once; the timer must wait for it."""
    prompt = random_prompt(rng, 64)
    script = torch.randint(3, 64, (3,), generator=rng).tolist()

    class SlowGPUModel(ScriptedModel):
        def forward(self, input_ids, *args, **kwargs):
            torch.cuda._sleep(int(2e7 * 1.4))          # ~20 ms of GPU clock cycles at ~1.4 GHz
            return super().forward(input_ids, *args, **kwargs)

    model = SlowGPUModel(script, len(prompt)).cuda()
    timing = impl.generate.timed_generate(model, torch.tensor(prompt, device="cuda"), len(script))
    assert timing.ttft_s > 0.008, f"ttft_s {timing.ttft_s * 1e3:.2f} ms: the GPU work (~20 ms) was not waited for"
