"""inf12 · Static batching: greedy generation for a whole batch of prompts at once.

One forward pass reads every weight once, whether it carries 1 sequence or 16: at batch 1 a decode step
is bound by memory bandwidth (or, on a GPU, by kernel launches), so 16 sequences cost little more than
one. A *static* batch starts together and runs until its longest member is done: sequences that stop
early on their EOS keep occupying their row (their extra tokens are computed and thrown away), which is
the padding waste that continuous batching (inf30) removes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lab.cache import DynamicCache
from lab.errors import NotStarted

from .padding import left_pad


@torch.inference_mode()
def batched_greedy_generate(model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                            eos_token_id: int | None = None, pad_id: int = 0) -> list[list[int]]:
    """Greedy generation for all prompts in one static batch; return each prompt's new tokens.

    model:          a `lab.model.LlamaModel`: model(ids [B, T], positions=[B, T], cache=..., attention_mask=
                    [B, past + T]) -> logits [B, T, vocab] (read lab/model.py: the dynamic cache mode).
    prompts:        `batch` non-empty lists of token ids, of different lengths.
    max_new_tokens: at most this many new tokens per prompt (0 gives a list of empty lists).
    eos_token_id:   if given, a sequence stops right after generating it (the EOS is kept in its output);
                    the others go on. The batch stops when every sequence has stopped or after
                    `max_new_tokens` steps.
    pad_id:         the id written into padding slots (masked out: it must not change any output).
    Returns one list of new token ids per prompt, in order: exactly what greedy generation of that
    prompt alone would give.

    The forwards: one prefill over the whole left-padded batch [batch, width] (each prompt at positions
    0..len - 1, as `left_pad` gives them), with a `lab.cache.DynamicCache` in the model's dtype and device,
    then one [batch, 1] forward per new token, each row's token at its own position
    (its prompt length + step, not the padded width). A sequence that has stopped keeps being fed (a
    static batch cannot shrink). Raises ValueError for an empty batch, an empty prompt or a negative
    max_new_tokens, before any forward. Hints: README.md, "Hints".
    """
    raise NotStarted("inf12: implement batched_greedy_generate")


