"""inf10 tests: cached decoding against transformers and the lab's simplest loop; its speed against recompute.

Oracles: transformers' greedy `generate` on the same weights (`lab.oracle.hf_greedy`); the lab's loop over
a concatenating cache (`lab.testing.greedy_alone`); no-cache logits, written here; a recording wrapper that
sees what your loop feeds the model.
"""

import pytest
import torch

from lab.config import get_shape
from lab.figures import one_cpu_thread
from lab.impl import Topic
from lab.testing import Recording, greedy_alone, pick, raises, random_config, random_lab_model
from lab.timing import compare

impl = Topic("inf10")

# Speed thresholds: decode steps with your cache vs recomputing the whole sequence each step, batch 4 at
# 4,095 tokens of context on a GPU (the Llama-3.2-1B shape), batch 1 at 255 tokens on a CPU (the real
# model). See docs/thresholds.md, inf10, for the calibration and why an H200 needs that much work. H100,
# 2026-12-07, three processes (4+3+3): the reference 9.95-12.97x (median 12.28), recompute-posing-as-cache 1.00x.
# An H200 (session 14, forked processes): the reference 5.65-10.96x (median 7.25), the naive 0.99-1.00x; 5.0 left
# 5.65 13% over, so 4.5 (26% under the H200's worst, 1.6x under the H100s' worst of 7.31).
GPU_THRESHOLD = 4.5
# CPU, one thread, on the lab's shared 2-core machine (3 runs each): the reference 8.13 8.51 8.72x (8.2-9.5x
# under heavy load), recompute-posing-as-cache 1.01 0.99 1.01x.
CPU_THRESHOLD = 3.0


def random_prompt(rng, vocab_size: int, lo: int = 5, hi: int = 31) -> list[int]:
    return torch.randint(0, vocab_size, (pick(rng, lo, hi) | 1,), generator=rng).tolist()


def first_difference(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_decode_matches_transformers(real_model, tokenizer, rng):
    """The real model, greedy, 16 tokens: identical to transformers' generate (its own KV cache)."""
    from lab.data import PROMPTS, chat_prompt
    from lab.oracle import hf_greedy
    text = PROMPTS[pick(rng, 0, len(PROMPTS) - 1)]
    for prompt in (tokenizer.encode(chat_prompt(text, tokenizer)), random_prompt(rng, tokenizer.vocab_size)):
        with one_cpu_thread():
            want = hf_greedy(prompt, max_new_tokens=16)
            got = impl.decode.kv_cache_decode(real_model, prompt, max_new_tokens=16)
        assert isinstance(got, list) and all(isinstance(t, int) for t in got), \
            f"kv_cache_decode must return a list of ints, got {type(got).__name__}: {got!r:.80}"
        assert got == want, (f"prompt {prompt[:6]}... ({len(prompt)} tokens): tokens differ from transformers "
                             f"from step {first_difference(got, want)}: expected {want}, got {got}")


def test_prefill_and_decode_logits_match_no_cache_at_every_step(real_model, rng):
    """The real model, a batch of two prompts: logits after each cached step = logits of the whole sequence."""
    batch, prompt_len, num_steps = 2, pick(rng, 9, 31) | 1, 8
    ids = torch.randint(real_model.config.vocab_size, (batch, prompt_len), generator=rng)
    cache = impl.kv_cache.KVCache(real_model.config, batch, prompt_len + num_steps)
    with one_cpu_thread():
        logits = impl.decode.prefill(real_model, ids, cache)
        for step in range(num_steps + 1):
            with torch.inference_mode():
                want = real_model(ids, last_only=True)[:, -1]
            assert logits.shape == want.shape, \
                f"step {step}: expected logits [batch, vocab_size] = {list(want.shape)}, got {list(logits.shape)}"
            err = (logits - want).abs().max().item()
            assert err < 2e-3, (f"step {step} (context {ids.shape[1]}): cached logits differ from the no-cache "
                                f"logits by up to {err:.2e} (expected < 2e-3, measured ~3e-5; a wrong position "
                                f"or a lost token gives > 1)")
            assert cache.seq_len == ids.shape[1], \
                f"step {step}: the cache should hold the {ids.shape[1]} tokens fed so far, holds {cache.seq_len}"
            if step < num_steps:
                next_ids = want.argmax(-1)
                ids = torch.cat([ids, next_ids[:, None]], dim=1)
                logits = impl.decode.decode_step(real_model, next_ids, cache)


def test_decode_prefills_once_then_feeds_one_token_per_step(rng):
    config = random_config(rng)
    model = Recording(random_lab_model(config, rng))
    prompt, num_new = random_prompt(rng, config.vocab_size), pick(rng, 5, 11)
    got = impl.decode.kv_cache_decode(model, prompt, num_new)
    want = greedy_alone(model.model, prompt, num_new)[0]
    assert got == want, (f"tokens differ from the lab's loop (lab.testing.greedy_alone) from step "
                         f"{first_difference(got, want)}: expected {want}, got {got}")
    expected = [(1, len(prompt))] + [(1, 1)] * (num_new - 1)
    assert model.calls == expected, (
        f"{len(prompt)}-token prompt, {num_new} new tokens: expected one prefill [1, {len(prompt)}] then "
        f"{num_new - 1} single-token steps [1, 1] (none for the last token), got calls with shapes {model.calls}")


@pytest.mark.parametrize("where", ["first", "middle", "absent"])
def test_decode_stops_after_eos_and_at_max_tokens(rng, where):
    config = random_config(rng)
    model = random_lab_model(config, rng)
    prompt = random_prompt(rng, config.vocab_size)
    reference = greedy_alone(model, prompt, 9)[0]
    eos = {"first": reference[0], "middle": reference[4], "absent": config.vocab_size}[where]
    want = reference[:reference.index(eos) + 1] if eos in reference else reference
    got = impl.decode.kv_cache_decode(model, prompt, 9, eos_token_id=eos)
    assert got == want, f"eos {eos} ({where}): expected {want} (stop right after eos, at most 9 tokens), got {got}"
    assert impl.decode.kv_cache_decode(model, prompt, 0) == [], "max_new_tokens=0 must give []"


def test_decode_rejects_bad_input(rng):
    config = random_config(rng)
    model = random_lab_model(config, rng)
    prompt = random_prompt(rng, config.vocab_size)
    with raises(ValueError, because="an empty prompt has no last token to predict from"):
        impl.decode.kv_cache_decode(model, [], 4)
    with raises(ValueError,
                because=f"max_len={len(prompt) + 4} cannot hold the {len(prompt)}-token prompt and 5 tokens fed "
                        "back"):                      # needs len(prompt) + 6 - 1 slots
        impl.decode.kv_cache_decode(model, prompt, 6, max_len=len(prompt) + 4)
    got = impl.decode.kv_cache_decode(model, prompt, 6, max_len=len(prompt) + 5)
    assert got == greedy_alone(model, prompt, 6)[0], "max_len = prompt + new tokens - 1 is enough"
    with raises(ValueError, because=f"max_len={len(prompt) - 1} cannot hold the {len(prompt)}-token prompt, "
                                    "even with max_new_tokens=0 (the docstring's check runs first)"):
        impl.decode.kv_cache_decode(model, prompt, 0, max_len=len(prompt) - 1)
    assert impl.decode.kv_cache_decode(model, prompt, 0, max_len=len(prompt)) == [], \
        "max_new_tokens=0 with max_len = prompt_len must give []"


# ------------------------------------------------------------------------------------------------ speed
def recompute_steps(model, prompt, first, cache, num_steps: int) -> torch.Tensor:
    """The baseline: each step runs the whole sequence (prompt and tokens so far) through the model."""
    seq, out = torch.cat([prompt, first[:, None]], dim=1), []
    with torch.inference_mode():
        for _ in range(num_steps):
            out.append(model(seq, last_only=True)[:, -1].argmax(-1))
            seq = torch.cat([seq, out[-1][:, None]], dim=1)
    return torch.stack(out, dim=1)


def cached_steps(model, prompt, first, cache, num_steps: int) -> torch.Tensor:
    """Yours: each step feeds one token per sequence to `decode_step`."""
    ids, out = first, []
    for _ in range(num_steps):
        ids = impl.decode.decode_step(model, ids, cache).argmax(-1)
        out.append(ids)
    return torch.stack(out, dim=1)


def decode_speed(model, *, batch: int, prompt_len: int, num_steps: int, threshold: float, device: str,
                 benchmark, record, rounds: int, what: str):
    """Time `num_steps` decode steps with your cache against recomputing, after an untimed prefill."""
    dtype = next(model.parameters()).dtype

    def make_inputs():
        prompt = torch.randint(model.config.vocab_size, (batch, prompt_len), device=device)
        cache = impl.kv_cache.KVCache(model.config, batch, prompt_len + num_steps, dtype, device)
        first = impl.decode.prefill(model, prompt, cache).argmax(-1)          # [batch]
        return prompt, first, cache

    def check(out, args):
        assert out.shape == (batch, num_steps), \
            f"expected [batch, steps] = {[batch, num_steps]} tokens, got {list(out.shape)}"
        assert args[2].seq_len == prompt_len + num_steps, \
            f"after {num_steps} steps the cache should hold {prompt_len + num_steps} tokens, holds {args[2].seq_len}"

    with one_cpu_thread(device):
        return compare(lambda *a: cached_steps(model, *a, num_steps),
                       lambda *a: recompute_steps(model, *a, num_steps), threshold=threshold, what=what,
                       make_inputs=make_inputs, check=check, warmup=1, rounds=rounds, device_type=device,
                       benchmark=benchmark, record=record)


@pytest.mark.speed
def test_cached_decode_beats_recompute_on_cpu(real_model, benchmark, record_property):
    """The real model on this CPU, one thread: 2 decode steps after a 255-token prompt."""
    result = decode_speed(real_model, batch=1, prompt_len=255, num_steps=2, threshold=CPU_THRESHOLD, device="cpu",
                          benchmark=benchmark, record=record_property, rounds=4,
                          what="cached decode step vs recompute, real model, CPU, context 255")
    result.assert_passes()


@pytest.mark.gpu
@pytest.mark.speed
def test_cached_decode_beats_recompute_on_gpu(benchmark, record_property):
    """Llama-3.2-1B shape, random bf16 weights, batch 4 at 4,095 tokens: GPU work dominates the recompute."""
    from lab.weights import random_model
    model = random_model(get_shape("llama-3.2-1b"), torch.bfloat16, "cuda")
    result = decode_speed(model, batch=4, prompt_len=4095, num_steps=2, threshold=GPU_THRESHOLD, device="cuda",
                          benchmark=benchmark, record=record_property, rounds=3,
                          what="cached decode step vs recompute, Llama-3.2-1B shape, batch 4, context 4095")
    result.assert_passes()
