"""inf00 hidden tests: the same contracts on shapes, contexts and lengths the visible tests do not use."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lab.config import SHAPES
from lab.impl import Topic
from lab.model import LlamaModel
from lab.testing import ConcatCache, ScriptedModel, naive_attention, random_config, random_lab_model

impl = Topic("inf00")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hidden_counts_on_every_named_shape(shape):
    config = SHAPES[shape]
    with torch.device("meta"):
        model = LlamaModel(config)
    linear = sum(m.weight.numel() for m in model.layers.modules() if isinstance(m, nn.Linear))
    assert impl.counts.matmul_params(config) == linear + config.vocab_size * config.hidden_size, shape
    assert impl.counts.weight_bytes(config, 2) == 2 * sum(p.numel() for p in model.parameters()), shape


def test_hidden_forward_flops_with_longer_context(rng):
    config = random_config(rng, num_layers=2)
    model = random_lab_model(config, rng)
    model.attention = naive_attention
    batch, past_len, num_tokens = 5, 37 + int(torch.randint(0, 20, (1,), generator=rng)), 1
    cache = ConcatCache(config.num_layers)
    with torch.no_grad():
        model(torch.randint(config.vocab_size, (batch, past_len), generator=rng), cache=cache)
        with FlopCounterMode(display=False) as counter:
            model(torch.randint(config.vocab_size, (batch, num_tokens), generator=rng), cache=cache)
    assert impl.counts.forward_flops(config, num_tokens, past_len=past_len, batch=batch) == counter.get_total_flops()


def test_hidden_greedy_on_long_scripts(rng):
    prompt = torch.randint(0, 64, (1 + 2 * int(torch.randint(20, 40, (1,), generator=rng)),), generator=rng).tolist()
    script = torch.randint(3, 64, (23,), generator=rng).tolist()
    model = ScriptedModel(script, len(prompt))
    assert impl.generate.greedy_generate(model, torch.tensor(prompt), max_new_tokens=len(script)) == script
    assert [ids.shape[1] for ids in model.calls] == [len(prompt) + i for i in range(len(script))]
