"""inf21 tests: KV-cache bytes per token for MHA, GQA and MQA variants of the real configs.

Oracle: what the lab's model actually stores. The model of each config runs a few tokens with a cache
that keeps every K/V it is handed (`lab.testing.ConcatCache`), and the bytes of those tensors are counted;
plus the published Llama-3-8B figure (128 KiB per token in bf16).
"""
import pytest
import torch

from lab.config import SHAPES
from lab.impl import Topic
from lab.testing import ConcatCache, pick
from lab.weights import empty_model


impl = Topic("inf21")


def variant(config, kind: str):
    """The config as MHA (a KV head per query head), as it is (GQA), or as MQA (one KV head)."""
    return {"mha": config.with_(num_kv_heads=config.num_heads), "gqa": config,
            "mqa": config.with_(num_kv_heads=1)}[kind]


def stored_bytes(config, batch: int, num_tokens: int, dtype) -> int:
    """Bytes of K/V the lab's model hands its cache for `num_tokens` tokens of `batch` sequences.

    The model keeps the config's attention heads (query and KV heads, head_dim) but only 2 layers, a hidden
    size of 8, a 1-token vocabulary and a 1-wide MLP, none of which the cache stores, so an 8B shape runs
    in milliseconds on a CPU. Every layer stores the same, so the count scales by
    num_layers / 2."""
    small = config.with_(num_layers=2, hidden_size=8, vocab_size=1, intermediate_size=1)
    model = empty_model(small, dtype, "cpu")
    for param in model.parameters():
        param.detach().zero_()                # shapes are what count; zeros keep the arithmetic cheap
    cache = ConcatCache(small.num_layers)
    with torch.no_grad():
        model(torch.zeros(batch, num_tokens, dtype=torch.long), cache=cache)
    per_layer = sum(t.numel() * t.element_size() for t in cache.k + cache.v) // small.num_layers
    return per_layer * config.num_layers


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("kind", ["mha", "gqa", "mqa"])
def test_kv_bytes_per_token_equal_what_the_model_stores(rng, shape, kind):
    config = variant(SHAPES[shape], kind)
    dtype = [torch.bfloat16, torch.float32, torch.float16][pick(rng, 0, 2)]
    batch, num_tokens = pick(rng, 1, 3), pick(rng, 2, 7)
    want = stored_bytes(config, batch, num_tokens, dtype) // (batch * num_tokens)
    got = impl.kv_bytes.kv_bytes_per_token(config, dtype)
    assert isinstance(got, int) and got == want, (
        f"{shape} as {kind.upper()} ({config.num_kv_heads} KV heads), {dtype}: the model stores {want:,} bytes of "
        f"K and V per token, kv_bytes_per_token says {got!r}")


def test_llama3_8b_kv_bytes_match_the_published_figures():
    """Llama-3-8B in bf16: 128 KiB per token with its 8 KV heads; MHA would take 512 KiB, MQA 16 KiB."""
    config = SHAPES["llama-3-8b"]
    for kind, want in (("mha", 512 * 1024), ("gqa", 128 * 1024), ("mqa", 16 * 1024)):
        got = impl.kv_bytes.kv_bytes_per_token(variant(config, kind))
        assert got == want, f"Llama-3-8B as {kind.upper()}, bf16 (the default dtype): expected {want:,} bytes " \
                            f"per token, got {got!r}"


@pytest.mark.parametrize("kind", ["mha", "gqa", "mqa"])
def test_kv_cache_bytes_scale_with_batch_and_length(rng, kind):
    config = variant(SHAPES["smollm2-135m"], kind)
    batch, seq_len = pick(rng, 1, 9), pick(rng, 1, 300)
    want = stored_bytes(config, batch, seq_len, torch.bfloat16)
    got = impl.kv_bytes.kv_cache_bytes(config, batch, seq_len)
    assert got == want, f"smollm2-135m as {kind.upper()}, batch {batch}, {seq_len} tokens, bf16: the model stores " \
                        f"{want:,} bytes of K/V, kv_cache_bytes says {got!r}"
    for bad in ((0, seq_len), (batch, -1), (batch, 2.5)):
        with pytest.raises(ValueError):
            impl.kv_bytes.kv_cache_bytes(config, *bad)
            pytest.fail(f"kv_cache_bytes(config, batch={bad[0]}, seq_len={bad[1]}) must raise ValueError")
