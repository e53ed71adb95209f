"""inf00 · Inference basics: greedy generation without a cache, with prefill and decode timed apart.

Every step feeds the whole sequence so far through the model and keeps only the last position's
logits. It is correct and simple, and it redoes all earlier work at every step: step t costs a
forward over prompt_len + t tokens. inf10 removes that waste with a KV cache.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from lab.hardware import synchronize
from lab.errors import NotStarted


@dataclass
class GenerationTiming:
    """What `timed_generate` measured.

    new_ids: the generated token ids (as `greedy_generate` returns them).
    ttft_s:  time to first token: the prefill forward over the prompt and picking its next token.
    step_s:  one entry per later token: the seconds of the decode step that produced it
             (so len(step_s) == len(new_ids) - 1).
    """

    new_ids: list[int]
    ttft_s: float
    step_s: list[float] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.ttft_s + sum(self.step_s)

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second of the decode phase alone (nan when there was none)."""
        return len(self.step_s) / sum(self.step_s) if self.step_s else float("nan")


def _as_batch(prompt_ids, device: torch.device) -> torch.Tensor:
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D sequence of token ids, got shape {list(ids.shape)}")
    return ids[None]


@torch.inference_mode()
def greedy_generate(model: torch.nn.Module, prompt_ids: list[int] | torch.Tensor, max_new_tokens: int,
                    eos_token_id: int | None = None) -> list[int]:
    """Generate greedily without a KV cache; return the new token ids only.

    model:         a `lab.model.LlamaModel` (or anything with its call signature): model(ids [1, T]) ->
                   logits [1, T, vocab_size].
    prompt_ids:    1-D token ids of one prompt (a list or an int64 tensor).
    max_new_tokens: stop after this many new tokens (0 gives []).
    eos_token_id:  if given, stop right after generating it (it is included in the result).

    Every step runs the model on the *whole* sequence so far (prompt + tokens generated) and takes the
    argmax of the last position's logits: no cache, no sampling, batch size 1. The ids go to the model on
    the device of its parameters. Returns a list of Python ints. Raises ValueError for an empty or
    non-1-D prompt. Hints: README.md, "Hints".
    """
    raise NotStarted("inf00: implement greedy_generate")


@torch.inference_mode()
def timed_generate(model: torch.nn.Module, prompt_ids: list[int] | torch.Tensor,
                   max_new_tokens: int) -> GenerationTiming:
    """Greedy generation as in `greedy_generate` (no eos stop), with prefill and each decode step timed.

    Returns a `GenerationTiming`: ttft_s covers the first forward (over the prompt) up to the first
    token being known on the host; each step_s entry covers one later forward up to its token, and
    nothing from an earlier step. Seconds of wall-clock time; on a GPU each time must include the
    device's work, not only its launch (device work is asynchronous). Raises ValueError when
    max_new_tokens < 1 (there is no first token to time) and for a prompt greedy_generate refuses.
    """
    raise NotStarted("inf00: implement timed_generate")
