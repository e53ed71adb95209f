"""inf02 tests: chunked prefill gives the logits and the KV cache of one-shot prefill."""
import math

import pytest
import torch

from lab.cache import DynamicCache
from lab.impl import Topic
from lab.testing import pick, raises, random_config, random_lab_model

impl = Topic("inf02")


def setup(rng, batch=None, prompt_len=None):
    config = random_config(rng)
    model = random_lab_model(config, rng)
    batch = batch or pick(rng, 1, 3)
    prompt_len = prompt_len or pick(rng, 17, 45) | 1
    ids = torch.randint(config.vocab_size, (batch, prompt_len), generator=rng)
    return config, model, ids


def one_shot(model, config, ids, prefix=None):
    """The oracle: the whole prompt in one forward (after the prefix, if any), on a fresh cache."""
    cache = DynamicCache(config, ids.shape[0], ids.shape[1] + (0 if prefix is None else prefix.shape[1]))
    with torch.no_grad():
        if prefix is not None:
            model(prefix, cache=cache)
        return model(ids, cache=cache), cache


def assert_same_cache(got: DynamicCache, want: DynamicCache, what: str) -> None:
    assert got.seq_len == want.seq_len, f"{what}: the cache should hold {want.seq_len} tokens, holds {got.seq_len}"
    for layer, (k, v, k_ref, v_ref) in enumerate(zip(got.k, got.v, want.k, want.v)):
        n = want.seq_len
        err = max((k[:, :, :n] - k_ref[:, :, :n]).abs().max().item(),
                  (v[:, :, :n] - v_ref[:, :, :n]).abs().max().item())
        assert err < 1e-4, f"{what}: layer {layer} K/V differ from one-shot prefill by up to {err:.2e}"


@pytest.mark.parametrize("chunking", ["one-token", "odd", "larger-than-prompt"])
def test_chunked_prefill_matches_one_shot(rng, chunking):
    config, model, ids = setup(rng)
    prompt_len = ids.shape[1]
    chunk_size = {"one-token": 1, "odd": pick(rng, 2, prompt_len // 2) | 1,
                  "larger-than-prompt": prompt_len + 3}[chunking]
    want, want_cache = one_shot(model, config, ids)
    cache = DynamicCache(config, ids.shape[0], prompt_len)
    got = impl.chunked_prefill.chunked_prefill(model, ids, cache, chunk_size)
    assert got.shape == want.shape, f"logits shape: expected {list(want.shape)}, got {list(got.shape)}"
    err = (got - want).abs().max().item()
    assert err < 1e-4, (f"chunks of {chunk_size} over {prompt_len} tokens: logits differ from one-shot prefill by "
                        f"up to {err:.2e} (each chunk must continue the positions and see the earlier chunks' K/V)")
    assert_same_cache(cache, want_cache, f"chunk_size={chunk_size}")


def test_chunked_prefill_continues_after_cached_tokens(rng):
    """A cache already holds an earlier turn: the new prompt's positions continue after it."""
    config, model, ids = setup(rng)
    prefix = torch.randint(config.vocab_size, (ids.shape[0], pick(rng, 3, 11)), generator=rng)
    want, want_cache = one_shot(model, config, ids, prefix)
    cache = DynamicCache(config, ids.shape[0], prefix.shape[1] + ids.shape[1])
    with torch.no_grad():
        model(prefix, cache=cache)
    got = impl.chunked_prefill.chunked_prefill(model, ids, cache, pick(rng, 2, 7))
    err = (got - want).abs().max().item()
    assert err < 1e-4, f"after {prefix.shape[1]} cached tokens: logits differ from one-shot by up to {err:.2e}"
    assert_same_cache(cache, want_cache, "after a cached prefix")


def test_chunked_prefill_feeds_at_most_chunk_size_tokens(rng):
    config, model, ids = setup(rng)
    chunk_size = pick(rng, 3, 9)
    fed = []
    model.register_forward_pre_hook(lambda module, args, kwargs: fed.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    impl.chunked_prefill.chunked_prefill(model, ids, DynamicCache(config, ids.shape[0], ids.shape[1]), chunk_size)
    full, rest = divmod(ids.shape[1], chunk_size)
    want = [chunk_size] * full + ([rest] if rest else [])
    assert fed == want, (f"{ids.shape[1]} tokens in chunks of {chunk_size}: expected "
                         f"{math.ceil(ids.shape[1] / chunk_size)} forwards of {want}, the model was fed {fed}")


def test_chunked_prefill_last_only(rng):
    config, model, ids = setup(rng)
    want, _ = one_shot(model, config, ids)
    got = impl.chunked_prefill.chunked_prefill(model, ids, DynamicCache(config, ids.shape[0], ids.shape[1]),
                                               pick(rng, 2, 8), last_only=True)
    assert got.shape == (ids.shape[0], 1, config.vocab_size), \
        f"last_only: expected [batch, 1, vocab] = {[ids.shape[0], 1, config.vocab_size]}, got {list(got.shape)}"
    err = (got - want[:, -1:]).abs().max().item()
    assert err < 1e-4, f"last_only: the last position's logits differ from one-shot by up to {err:.2e}"


@pytest.mark.parametrize("case", ["zero-chunk", "1-d-prompt", "empty-prompt"])
def test_chunked_prefill_rejects_bad_input(rng, case):
    config, model, ids = setup(rng)
    cache = DynamicCache(config, ids.shape[0], ids.shape[1])
    args = {"zero-chunk": (ids, 0), "1-d-prompt": (ids[0], 4), "empty-prompt": (ids[:, :0], 4)}[case]
    with raises(ValueError,
                because=f"chunked_prefill with {case}: chunks must be >= 1 token, the prompt [batch, len] and "
                        "non-empty"):
        impl.chunked_prefill.chunked_prefill(model, args[0], cache, args[1])
