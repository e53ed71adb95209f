"""inf02 · TTFT and TBT: the two latencies a user feels, measured on a generation with a KV cache.

Time to first token (TTFT) is the prefill: one forward over the whole prompt, whose cost grows with its
length. Time between tokens (TBT) is one decode step: one token through the model, reading every weight
and the cached K/V, nearly the same cost at any context a model of this size serves. The device works
asynchronously, so a timer must synchronize before each clock read; the tests hand you a fake device
whose clock only moves when you do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from lab.hardware import synchronize as device_synchronize


@dataclass
class LatencyTiming:
    """What `measure_latency` measured.

    new_ids: the generated token ids (greedy).
    ttft_s:  seconds from just before the prefill forward until the first new token is known on the host.
    tbt_s:   seconds of each decode step, one per token after the first (len(new_ids) - 1 entries).
    """

    new_ids: list[int]
    ttft_s: float
    tbt_s: list[float] = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second of the decode phase alone (nan when there was none)."""
        return len(self.tbt_s) / sum(self.tbt_s) if self.tbt_s else float("nan")


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, prompt_ids: list[int] | torch.Tensor, max_new_tokens: int,
                    cache, *, clock: Callable[[], float] = time.perf_counter,
                    synchronize: Callable[[], None] | None = None) -> LatencyTiming:
    """Generate `max_new_tokens` tokens greedily with a KV cache, timing the prefill and each decode step.

    model:      a `lab.model.LlamaModel` (or anything with its call signature and a parameter).
    prompt_ids: 1-D token ids of one prompt.
    cache:      an empty KV cache in the model's dynamic mode (`lab.model.Cache`), e.g.
                `lab.cache.DynamicCache(model.config, 1, len(prompt_ids) + max_new_tokens)`.
    clock, synchronize: the clock to read and the function that waits for queued device work (default:
                `lab.hardware.synchronize` on the model's device). Call synchronize() right before *every*
                clock read.
    The prefill is one forward over the whole prompt ([1, P] ids) with `cache`, then the argmax of the
    last position's logits; each decode step is one forward over only the newest token ([1, 1]) with
    the same cache. TTFT ends when the first token is known on the host, each TBT entry when its token
    is; each starts just before its own forward. No eos stop: exactly max_new_tokens tokens.
    Raises ValueError if max_new_tokens < 1 or the prompt is empty or not 1-D. Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 to time a first token, got {max_new_tokens}")
    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D sequence of token ids, got shape {list(ids.shape)}")
    sync = synchronize or (lambda: device_synchronize(device))
    step_input, new_ids, times = ids[None], [], []
    for _ in range(max_new_tokens):
        sync()
        start = clock()
        next_id = model(step_input, cache=cache, last_only=True)[0, -1].argmax()
        new_ids.append(int(next_id))
        sync()
        times.append(clock() - start)
        step_input = next_id.view(1, 1)
    return LatencyTiming(new_ids=new_ids, ttft_s=times[0], tbt_s=times[1:])
    # END SOLUTION
