"""Stand-ins and spies the topics' tests share (public and hidden alike): models that record what a loop
fed them, a model on a fake device, and copies that take a known time.

They live here, not in a test file, so that a hidden test imports them from the lab rather than from a
public test module (whose bans and fixtures would come along).
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lab.fake_clock import FakeDevice

_perf_counter = time.perf_counter           # bound at import, before any student module: the oracle's clock


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
    """A ScriptedModel whose forward sleeps `base_s + per_token_s * num_tokens` seconds (a known clock), and
    records in `forward_s` how long each forward really took (a loaded machine oversleeps: tests compare a
    student's timings with these, not with the nominal sleep)."""

    def __init__(self, script: list[int], prompt_len: int, base_s: float, per_token_s: float):
        super().__init__(script, prompt_len)
        self.base_s, self.per_token_s = base_s, per_token_s
        self.forward_s: list[float] = []

    def forward(self, input_ids, *args, **kwargs):
        start = _perf_counter()
        time.sleep(self.base_s + self.per_token_s * input_ids.shape[1])
        out = super().forward(input_ids, *args, **kwargs)
        self.forward_s.append(_perf_counter() - start)
        return out


class Recording(nn.Module):
    """Wraps a model and records the shape of every `input_ids` it is called with (in `calls`)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def forward(self, input_ids, *args, **kwargs):
        self.calls.append(tuple(input_ids.shape))
        return self.model(input_ids, *args, **kwargs)


class Spy(nn.Module):
    """Wraps a model and records each forward's input shape and the positions each token really got
    (`calls`: [(shape, positions)])."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def forward(self, input_ids, positions=None, cache=None, attention_mask=None, last_only=False,
                cache_position=None):
        batch, num_tokens = input_ids.shape
        if positions is None:                                   # what lab.model would use by default
            start = cache_position if cache_position is not None else \
                (cache.seq_len if cache is not None else 0) + torch.arange(num_tokens)
            positions = torch.as_tensor(start).reshape(1, -1).expand(batch, -1)
        self.calls.append((tuple(input_ids.shape), positions.detach().cpu().clone()))
        return self.model(input_ids, positions=positions, cache=cache, attention_mask=attention_mask,
                          last_only=last_only, cache_position=cache_position)


class SlowCopies(TorchFunctionMode):
    """Every tensor copy takes `seconds` longer: a copy whose duration the test knows."""

    COPIES = {torch.Tensor.copy_, torch.Tensor.clone, torch.clone, torch.Tensor.__setitem__}

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.num_copies = seconds, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.COPIES:
            self.num_copies += 1
            time.sleep(self.seconds)
        return func(*args, **(kwargs or {}))


class FakeCachedModel(ScriptedModel):
    """Scripted tokens. Each forward over T tokens spends `host_s` on the host, queues
    `base_s + per_token_s * T` of work on a FakeDevice, and appends T slots to the cache it is given."""

    def __init__(self, script, prompt_len, dev: FakeDevice, host_s=0.0005, base_s=0.004, per_token_s=0.0002):
        super().__init__(script, prompt_len)
        self.dev, self.host_s, self.base_s, self.per_token_s = dev, host_s, base_s, per_token_s

    def forward(self, input_ids, positions=None, cache=None, attention_mask=None, last_only=False):
        logits = super().forward(input_ids, positions, cache, attention_mask, last_only)
        num_tokens = input_ids.shape[1]
        self.dev.host(self.host_s)
        self.dev.launch(self.base_s + self.per_token_s * num_tokens)
        if cache is not None:
            kv = torch.zeros(1, 1, num_tokens, 2)
            cache.update(0, kv, kv)
        return logits
