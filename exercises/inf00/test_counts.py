"""inf00 tests: FLOPs and bytes counted by hand must equal what the lab model really does."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lab.config import SHAPES
from lab.impl import Topic
from lab.model import LlamaModel
from lab.testing import ConcatCache, naive_attention, pick, raises, random_config, random_lab_model

impl = Topic("inf00")


class RecordingCache(ConcatCache):
    """A ConcatCache that adds up the bytes of every K and V it is given."""

    written_bytes = 0

    def update(self, layer_idx, k, v):
        self.written_bytes += k.numel() * k.element_size() + v.numel() * v.element_size()
        return super().update(layer_idx, k, v)


@pytest.mark.parametrize("shape", ["random", "smollm2-135m", "llama-3-8b"])
def test_matmul_params_count_every_projection_and_the_head(rng, shape):
    config = random_config(rng) if shape == "random" else SHAPES[shape]
    with torch.device("meta"):
        model = LlamaModel(config)
    want = sum(m.weight.numel() for m in model.layers.modules() if isinstance(m, nn.Linear))
    want += config.vocab_size * config.hidden_size                        # the output head, tied or not
    assert impl.counts.matmul_params(config) == want, \
        f"{shape}: expected {want:,} matmul weights, got {impl.counts.matmul_params(config):,}"


def test_forward_flops_equal_the_flop_counter(rng):
    """torch's FlopCounterMode counts every matmul the model runs (attention made of plain matmuls)."""
    config = random_config(rng)
    model = random_lab_model(config, rng)
    model.attention = naive_attention
    batch, past_len, num_tokens = pick(rng, 1, 3), pick(rng, 0, 19), pick(rng, 2, 13)
    cache = ConcatCache(config.num_layers)
    with torch.no_grad():
        if past_len:
            model(torch.randint(config.vocab_size, (batch, past_len), generator=rng), cache=cache)
        ids = torch.randint(config.vocab_size, (batch, num_tokens), generator=rng)
        with FlopCounterMode(display=False) as counter:
            model(ids, cache=cache if past_len else None)
    got = impl.counts.forward_flops(config, num_tokens, past_len=past_len, batch=batch)
    assert got == counter.get_total_flops(), (
        f"batch {batch}, {num_tokens} new tokens after {past_len} cached: the model ran "
        f"{counter.get_total_flops():,} matmul FLOPs, forward_flops says {got:,}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_weight_bytes_equal_the_model_parameters(rng, dtype):
    config = random_config(rng)
    model = random_lab_model(config, rng, dtype)
    size = torch.finfo(dtype).bits // 8
    assert impl.counts.weight_bytes(config, size) == model.weight_bytes(), \
        f"{dtype}: the model holds {model.weight_bytes():,} bytes of parameters, weight_bytes says " \
        f"{impl.counts.weight_bytes(config, size):,} (is a tied embedding counted once?)"


def test_kv_and_step_bytes_equal_what_a_cache_stores(rng):
    config = random_config(rng)
    dtype = torch.bfloat16
    model = random_lab_model(config, rng, dtype)
    batch, prompt_len = pick(rng, 1, 4), pick(rng, 3, 17)
    cache = RecordingCache(config.num_layers)
    with torch.no_grad():
        model(torch.randint(config.vocab_size, (batch, prompt_len), generator=rng), cache=cache)
    assert impl.counts.kv_cache_bytes(config, prompt_len, batch, 2) == cache.written_bytes, \
        f"{prompt_len} tokens x batch {batch}: the cache holds {cache.written_bytes:,} bytes, " \
        f"kv_cache_bytes says {impl.counts.kv_cache_bytes(config, prompt_len, batch, 2):,}"
    stored = sum(k.numel() * k.element_size() for k in cache.k + cache.v)
    streamed = sum(m.weight.numel() * 2 for m in model.modules() if isinstance(m, nn.Linear))
    streamed += sum(p.numel() * 2 for n, p in model.named_parameters() if n.endswith("norm.weight"))
    new_kv = stored // prompt_len
    assert impl.counts.prefill_bytes(config, prompt_len, batch, 2) == streamed + stored
    assert impl.counts.decode_step_bytes(config, prompt_len, batch, 2) == streamed + stored + new_kv, \
        "a decode step reads every matmul weight and norm once, reads the cached K/V and writes one token's K/V"


def test_arithmetic_intensity_tells_decode_from_prefill():
    """Llama-3-8B in bf16: decode at batch 1 does ~1 FLOP per byte; a 2,048-token prefill does hundreds."""
    c, counts = SHAPES["llama-3-8b"], impl.counts
    decode = counts.arithmetic_intensity(counts.forward_flops(c, 1, past_len=2047), counts.decode_step_bytes(c, 2047))
    prefill = counts.arithmetic_intensity(counts.forward_flops(c, 2048), counts.prefill_bytes(c, 2048))
    assert 0.9 < decode < 1.1, f"decode intensity at batch 1 should be ~1 FLOP/byte, got {decode:.2f}"
    assert 1000 < prefill < 2500, f"a 2,048-token prefill should do ~1,500-2,000 FLOP/byte, got {prefill:.0f}"
    batch64 = counts.arithmetic_intensity(counts.forward_flops(c, 1, 2047, batch=64),
                                          counts.decode_step_bytes(c, 2047, 64))
    assert 25 < batch64 < 64, f"batching 64 decodes shares the weights: expected 25-64 FLOP/byte, got {batch64:.1f}"
    with raises(ValueError, because="arithmetic_intensity(1, 0): no bytes moved, the intensity is undefined"):
        counts.arithmetic_intensity(1, 0)
