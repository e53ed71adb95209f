"""inf10 tests: the KVCache on its own and plugged into the lab model.

Oracles: the K/V handed to the cache, concatenated (`lab.testing.ConcatCache`); the byte formula of the
lesson; the model's logits without any cache.
"""
import pytest
import torch

from lab.config import SHAPES
from lab.impl import Topic
from lab.testing import ConcatCache, pick, raises, random_config, random_lab_model

impl = Topic("inf10")


def gqa_config(rng):
    """A small random config whose query heads outnumber its KV heads (2 or 3 per group)."""
    num_kv_heads = pick(rng, 1, 3)
    return random_config(rng, num_kv_heads=num_kv_heads, num_heads=num_kv_heads * pick(rng, 2, 3),
                         num_layers=pick(rng, 2, 3))


def formula_bytes(config, batch, max_len, dtype) -> int:
    """The lesson's formula: 2 (K, V) x layers x KV heads x head_dim x slots x batch x bytes per value."""
    size = torch.empty(0, dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * max_len * batch * size


def random_kv(rng, config, batch, num_new, dtype=torch.float32):
    shape = (batch, config.num_kv_heads, num_new, config.head_dim)
    return torch.randn(shape, generator=rng).to(dtype), torch.randn(shape, generator=rng).to(dtype)


@pytest.mark.parametrize("shape", ["random", "smollm2-135m", "llama-3-8b"])
def test_buffers_are_preallocated_per_layer_in_gqa_shape(rng, shape):
    config = gqa_config(rng) if shape == "random" else SHAPES[shape]
    batch, max_len = pick(rng, 1, 5), pick(rng, 17, 99)
    dtype = torch.bfloat16 if shape == "llama-3-8b" else torch.float32
    device = "meta" if shape == "llama-3-8b" else "cpu"            # a shape's bytes without allocating them
    cache = impl.kv_cache.KVCache(config, batch, max_len, dtype=dtype, device=device)
    want = (batch, config.num_kv_heads, max_len, config.head_dim)
    assert len(cache.k) == len(cache.v) == config.num_layers, \
        f"expected one K and one V buffer per layer ({config.num_layers}), got {len(cache.k)} and {len(cache.v)}"
    for i, buf in enumerate(cache.k + cache.v):
        assert tuple(buf.shape) == want, (
            f"buffer {i}: expected [batch, num_kv_heads, max_len, head_dim] = {list(want)}, got {list(buf.shape)} "
            f"({config.num_heads} query heads share {config.num_kv_heads} KV heads: store only the KV heads)")
        assert buf.dtype == dtype and buf.device.type == device, \
            f"buffer {i}: expected {dtype} on {device}, got {buf.dtype} on {buf.device}"
    want_bytes = formula_bytes(config, batch, max_len, dtype)
    assert cache.nbytes == want_bytes, \
        f"{shape}, batch {batch}, max_len {max_len}: the formula gives {want_bytes:,} bytes, " \
        f"nbytes says {cache.nbytes:,}"
    assert cache.seq_len == 0, f"a new cache holds no tokens, seq_len says {cache.seq_len}"


def test_update_stores_and_returns_everything_so_far(rng):
    """Prefill then single tokens, layer by layer as the model does: same K/V as concatenating them."""
    config = gqa_config(rng)
    batch, prompt_len, num_steps = pick(rng, 1, 4), pick(rng, 3, 21), pick(rng, 3, 7)
    cache = impl.kv_cache.KVCache(config, batch, prompt_len + num_steps + pick(rng, 0, 5))
    oracle = ConcatCache(config.num_layers)
    for step, num_new in enumerate([prompt_len] + [1] * num_steps):
        stored = oracle.seq_len
        assert cache.seq_len == stored, f"step {step}: {stored} tokens stored, seq_len says {cache.seq_len}"
        for layer in range(config.num_layers):
            k, v = random_kv(rng, config, batch, num_new)
            got_k, got_v = cache.update(layer, k, v)
            want_k, want_v = oracle.update(layer, k, v)
            assert got_k.shape == want_k.shape and got_v.shape == want_v.shape, (
                f"step {step}, layer {layer}: update must return the {stored + num_new} tokens stored so far, "
                f"[batch, num_kv_heads, seq, head_dim] = {list(want_k.shape)}; got {list(got_k.shape)}")
            assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v), \
                f"step {step}, layer {layer}: returned K/V differ from the ones stored, in order, oldest first"
    assert cache.seq_len == prompt_len + num_steps


def test_buffers_are_allocated_once_and_returned_as_views(rng):
    """A cache that `torch.cat`s copies everything at every step; this one must write in place."""
    config = gqa_config(rng)
    batch, prompt_len = pick(rng, 1, 3), pick(rng, 3, 15)
    cache = impl.kv_cache.KVCache(config, batch, prompt_len + 9)
    pointers = [buf.data_ptr() for buf in cache.k + cache.v]
    for num_new in [prompt_len] + [1] * 5:
        for layer in range(config.num_layers):
            got_k, got_v = cache.update(layer, *random_kv(rng, config, batch, num_new))
            for name, got, buf in (("K", got_k, cache.k[layer]), ("V", got_v, cache.v[layer])):
                assert got.data_ptr() == buf.data_ptr(), \
                    f"layer {layer}: the returned {name} must be a view of the layer's buffer (a slice), not a copy"
    now = [buf.data_ptr() for buf in cache.k + cache.v]
    assert now == pointers, \
        "the buffers moved while generating: allocate them once in __init__ and write into them in place"


def test_overflow_raises_a_clear_error_and_keeps_the_cache(rng):
    config = gqa_config(rng)
    batch, max_len = pick(rng, 1, 3), pick(rng, 9, 25)
    cache = impl.kv_cache.KVCache(config, batch, max_len)
    filled = max_len - pick(rng, 1, 4)
    for layer in range(config.num_layers):
        cache.update(layer, *random_kv(rng, config, batch, filled))
    too_many = max_len - filled + 1
    with raises(ValueError, match="max_len",
                because=f"{filled} stored + {too_many} new tokens do not fit max_len={max_len}"):
        cache.update(0, *random_kv(rng, config, batch, too_many))
    assert cache.seq_len == filled, \
        f"a refused update must leave the cache as it was ({filled} tokens), seq_len says {cache.seq_len}"
    for layer in range(config.num_layers):                  # what still fits is accepted, to the last slot
        k, _ = cache.update(layer, *random_kv(rng, config, batch, max_len - filled))
        assert k.shape[2] == max_len
    with raises(ValueError, match="max_len",
                because=f"the cache is full ({max_len} of max_len={max_len}): one more token does not fit"):
        cache.update(0, *random_kv(rng, config, batch, 1))


def test_update_rejects_wrong_shapes(rng):
    """K/V with one head per *query* head (no GQA), or the wrong batch, must be refused, not broadcast."""
    config = gqa_config(rng)
    batch = pick(rng, 2, 3)
    cache = impl.kv_cache.KVCache(config, batch, 16)
    per_query_head = torch.randn(batch, config.num_heads, 3, config.head_dim, generator=rng)
    with raises(ValueError,
                because=f"K/V with {config.num_heads} query heads, not the {config.num_kv_heads} KV heads the buffers "
                        "hold"):
        cache.update(0, per_query_head, per_query_head)
    k, v = random_kv(rng, config, batch - 1, 3)
    with raises(ValueError, because=f"K/V of batch {batch - 1} for a cache built for batch {batch}"):
        cache.update(0, k, v)


def test_cache_plugs_into_the_model_and_matches_no_cache_logits(rng):
    """model(ids, cache=your_cache), a prompt then single tokens: logits equal to running without a cache."""
    config = gqa_config(rng)
    model = random_lab_model(config, rng)
    batch, prompt_len, num_steps = pick(rng, 1, 3), pick(rng, 3, 19), pick(rng, 3, 6)
    ids = torch.randint(config.vocab_size, (batch, prompt_len + num_steps), generator=rng)
    cache = impl.kv_cache.KVCache(config, batch, prompt_len + num_steps)
    with torch.no_grad():
        want = model(ids)                                                    # [batch, seq, vocab]
        got = [model(ids[:, :prompt_len], cache=cache)]
        for t in range(prompt_len, prompt_len + num_steps):
            got.append(model(ids[:, t:t + 1], cache=cache))
    got = torch.cat(got, dim=1)
    err = (got - want).abs().max().item()
    assert err < 1e-4, (f"batch {batch}, prompt {prompt_len} + {num_steps} single tokens: logits with your cache "
                        f"differ from the no-cache logits by up to {err:.2e} (expected < 1e-4)")
