"""inf10 hidden tests: the KVCache in bf16 with uneven updates, cached decode on wider GQA, edge-length decodes."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import ConcatCache, Recording, greedy_alone, pick, raises, random_config, random_lab_model

impl = Topic("inf10")


def wide_gqa_config(rng, **overrides):
    """4 query heads per KV head (the public tests use 2 or 3)."""
    num_kv_heads = pick(rng, 1, 2)
    return random_config(rng, num_kv_heads=num_kv_heads, num_heads=4 * num_kv_heads, **overrides)


def test_hidden_bf16_cache_with_uneven_updates_up_to_overflow(rng):
    """bf16, 4 query heads per KV head, updates of uneven sizes filling max_len to the last slot, then one more."""
    config = wide_gqa_config(rng, num_layers=pick(rng, 2, 3))
    batch = pick(rng, 2, 5)
    sizes = [pick(rng, 2, 9) for _ in range(3)] + [1, 1, pick(rng, 2, 4)]
    max_len = sum(sizes)
    cache = impl.kv_cache.KVCache(config, batch, max_len, dtype=torch.bfloat16)
    want_shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    assert all(tuple(b.shape) == want_shape and b.dtype == torch.bfloat16 for b in cache.k + cache.v), \
        f"buffers must be bf16 [batch, num_kv_heads, max_len, head_dim] = {list(want_shape)}"
    assert cache.nbytes == 2 * config.num_layers * config.num_kv_heads * config.head_dim * max_len * batch * 2
    pointers = [b.data_ptr() for b in cache.k + cache.v]
    oracle = ConcatCache(config.num_layers)
    for step, num_new in enumerate(sizes):
        for layer in range(config.num_layers):
            shape = (batch, config.num_kv_heads, num_new, config.head_dim)
            k, v = torch.randn(shape, generator=rng).bfloat16(), torch.randn(shape, generator=rng).bfloat16()
            got_k, got_v = cache.update(layer, k, v)
            want_k, want_v = oracle.update(layer, k, v)
            assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v), \
                f"update {step} ({num_new} tokens), layer {layer}: returned K/V differ from everything stored so far"
            assert got_k.data_ptr() == cache.k[layer].data_ptr(), "update must return a view of the layer's buffer"
        assert cache.seq_len == oracle.seq_len
    assert [b.data_ptr() for b in cache.k + cache.v] == pointers, "the buffers moved: write into them in place"
    shape = (batch, config.num_kv_heads, 1, config.head_dim)
    with raises(ValueError, match="max_len", because="the bfloat16 cache is full: one more token does not fit max_len"):
        cache.update(0, torch.zeros(shape, dtype=torch.bfloat16), torch.zeros(shape, dtype=torch.bfloat16))
    assert cache.seq_len == max_len


def test_hidden_prefill_and_decode_steps_match_no_cache_on_a_batch(rng):
    """A random model with wide GQA, a batch of 3, a long prompt, 6 cached steps: the no-cache logits each step."""
    config = wide_gqa_config(rng, num_layers=2)
    model = random_lab_model(config, rng)
    batch, prompt_len, num_steps = 3, pick(rng, 40, 70) | 1, 6
    ids = torch.randint(config.vocab_size, (batch, prompt_len), generator=rng)
    cache = impl.kv_cache.KVCache(config, batch, prompt_len + num_steps)
    logits = impl.decode.prefill(model, ids, cache)
    for step in range(num_steps + 1):
        with torch.inference_mode():
            want = model(ids, last_only=True)[:, -1]
        assert logits.shape == want.shape, f"step {step}: expected logits {list(want.shape)}, got {list(logits.shape)}"
        err = (logits - want).abs().max().item()
        assert err < 1e-4, (f"step {step} (context {ids.shape[1]}): cached logits differ from no-cache by up to "
                            f"{err:.2e}")
        assert cache.seq_len == ids.shape[1]
        if step < num_steps:
            next_ids = torch.randint(config.vocab_size, (batch,), generator=rng)     # any token, not just argmax
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
            logits = impl.decode.decode_step(model, next_ids, cache)


@pytest.mark.parametrize("case", ["one-token-prompt", "one-new-token", "eos-late"])
def test_hidden_decode_edge_lengths(rng, case):
    """A one-token prompt, max_new_tokens=1 (prefill only), an EOS that comes late: tokens and model calls."""
    config = wide_gqa_config(rng)
    model = Recording(random_lab_model(config, rng))
    prompt_len = 1 if case == "one-token-prompt" else pick(rng, 30, 60) | 1
    prompt = torch.randint(config.vocab_size, (prompt_len,), generator=rng).tolist()
    num_new = {"one-token-prompt": 12, "one-new-token": 1, "eos-late": 14}[case]
    reference = greedy_alone(model.model, prompt, num_new)[0]
    eos = reference[-2] if case == "eos-late" else None
    want = reference[:reference.index(eos) + 1] if eos is not None else reference
    got = impl.decode.kv_cache_decode(model, prompt, num_new, eos_token_id=eos)
    assert got == want, f"{case}: expected {want}, got {got}"
    expected_calls = [(1, prompt_len)] + [(1, 1)] * (len(want) - 1)
    assert model.calls == expected_calls, f"{case}: expected calls {expected_calls}, got {model.calls}"
