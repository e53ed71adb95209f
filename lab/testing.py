"""Test aids shared by the topics' tests: small random models, reference caches, fake models.

Everything here is deliberately simple, so that it can serve as an oracle: a test compares the
student's fast code with these slow, obviously-right versions.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn

from lab.config import ModelConfig
from lab.model import LlamaModel


def pick(gen: torch.Generator, lo: int, hi: int) -> int:
    """A random int in [lo, hi], both ends included, from the test's seeded generator (odd sizes)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def random_config(gen: torch.Generator, **overrides) -> ModelConfig:
    """A small Llama config with odd sizes (odd vocab, odd layer count, GQA groups of 1 to 3)."""
    def pick(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))
    num_kv_heads = pick(1, 3)
    head_dim = 2 * pick(4, 12)
    fields = dict(name="random", vocab_size=2 * pick(50, 150) + 1, hidden_size=pick(24, 72) | 1,
                  intermediate_size=pick(40, 120) | 1, num_layers=pick(1, 3), num_heads=num_kv_heads * pick(1, 3),
                  num_kv_heads=num_kv_heads, head_dim=head_dim, rope_theta=10_000.0,
                  max_position_embeddings=512, tie_word_embeddings=bool(pick(0, 1)))
    fields.update(overrides)
    return ModelConfig(**fields)


def random_lab_model(config: ModelConfig, gen: torch.Generator, dtype=torch.float32) -> LlamaModel:
    """The lab model with N(0, 1/fan_in) weights drawn from `gen` (reproducible), in eval mode."""
    model = LlamaModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    return model.to(dtype).eval()


class ConcatCache:
    """The naive KV cache: `torch.cat` the new K/V onto the old at every step (O(n^2) copying).

    Follows `lab.model.Cache`. An oracle and a baseline, not something to ship.
    """

    def __init__(self, num_layers: int):
        self.k: list[torch.Tensor | None] = [None] * num_layers
        self.v: list[torch.Tensor | None] = [None] * num_layers

    @property
    def seq_len(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        old_k, old_v = self.k[layer_idx], self.v[layer_idx]
        self.k[layer_idx] = k if old_k is None else torch.cat([old_k, k], dim=2)
        self.v[layer_idx] = v if old_v is None else torch.cat([old_v, v], dim=2)
        return self.k[layer_idx], self.v[layer_idx]


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention by the book: repeat KV heads, softmax(QK^T / sqrt(d)) V, masked slots at -inf."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


class ScriptedModel(nn.Module):
    """A fake model that 'predicts' a fixed script: after n tokens the argmax is script[n - start].

    Records every `input_ids` it is called with in `calls`, so a test can see what a loop fed it.
    """

    def __init__(self, script: list[int], prompt_len: int, vocab_size: int = 64):
        super().__init__()
        self.script, self.prompt_len, self.vocab_size = script, prompt_len, vocab_size
        self.anchor = nn.Parameter(torch.zeros(1))        # so next(model.parameters()) gives a device
        self.calls: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, positions=None, cache=None, attention_mask=None,
                last_only: bool = False) -> torch.Tensor:
        self.calls.append(input_ids.detach().clone())
        batch, num_tokens = input_ids.shape
        seen = (cache.seq_len if cache is not None else 0) + num_tokens
        logits = torch.zeros(batch, num_tokens, self.vocab_size, device=self.anchor.device)
        for t in range(num_tokens):
            step = seen - num_tokens + t + 1 - self.prompt_len
            if 0 <= step < len(self.script):
                logits[:, t, self.script[step]] = 1.0
        return logits[:, -1:] if last_only else logits


class SleepyModel(ScriptedModel):
    """A ScriptedModel whose forward takes `base_s + per_token_s * num_tokens` seconds (a known clock)."""

    def __init__(self, script: list[int], prompt_len: int, base_s: float, per_token_s: float):
        super().__init__(script, prompt_len)
        self.base_s, self.per_token_s = base_s, per_token_s

    def forward(self, input_ids, *args, **kwargs):
        time.sleep(self.base_s + self.per_token_s * input_ids.shape[1])
        return super().forward(input_ids, *args, **kwargs)


class TritonLaunches:
    """What `count_triton_launches` saw: `count` launches, `names` the kernels' names in launch order."""

    def __init__(self):
        self.names: list[str] = []

    @property
    def count(self) -> int:
        return len(self.names)


@contextlib.contextmanager
def count_triton_launches():
    """Count the Triton kernel launches made inside the block (compiled, or through the interpreter).

        with count_triton_launches() as launches:
            out = my_kernel_wrapper(x)
        assert launches.count == 1, launches.names

    Interim version (inf21) until lab.testing gains the shared one: it wraps `JITFunction.run` and the
    interpreter's `InterpretedFunction.run`, through which every `kernel[grid](...)` passes.
    """
    from triton.runtime import interpreter, jit

    launches = TritonLaunches()
    patched = []
    for cls in (jit.JITFunction, interpreter.InterpretedFunction):
        original = cls.__dict__.get("run")
        if original is None:
            continue

        def counting(self, *args, __original=original, **kwargs):
            launches.names.append(getattr(getattr(self, "fn", None), "__name__", None) or repr(self))
            return __original(self, *args, **kwargs)
        setattr(cls, "run", counting)
        patched.append((cls, original))
    try:
        yield launches
    finally:
        for cls, original in patched:
            setattr(cls, "run", original)
