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
    # BEGIN SOLUTION
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    input_ids, attention_mask, positions = left_pad(prompts, pad_id)
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    weight = next(model.parameters())
    input_ids, attention_mask, positions = (t.to(weight.device) for t in (input_ids, attention_mask, positions))
    batch, width = input_ids.shape
    cache = DynamicCache(model.config, batch, width + max_new_tokens, dtype=weight.dtype, device=weight.device)

    logits = model(input_ids, positions=positions, cache=cache, attention_mask=attention_mask, last_only=True)
    next_ids = logits[:, -1].argmax(-1)                                 # [B]
    next_positions = positions[:, -1:] + 1                              # [B, 1]: each row's own count
    is_done = torch.zeros(batch, dtype=torch.bool, device=weight.device)
    new_ids = [next_ids]
    for _ in range(max_new_tokens - 1):
        if eos_token_id is not None:
            is_done |= next_ids == eos_token_id
            if bool(is_done.all()):                                     # one host sync per step
                break
        attention_mask = F.pad(attention_mask, (0, 1), value=1)         # [B, past + 1]
        logits = model(next_ids[:, None], positions=next_positions, cache=cache,
                       attention_mask=attention_mask, last_only=True)
        next_ids = logits[:, -1].argmax(-1)
        next_positions = next_positions + 1
        new_ids.append(next_ids)
    rows = torch.stack(new_ids, dim=1).tolist()                         # [B, steps]
    return [_cut_after(row, eos_token_id) for row in rows]
    # END SOLUTION


# BEGIN SOLUTION
def _cut_after(ids: list[int], eos_token_id: int | None) -> list[int]:
    """ids up to and including the first EOS (all of them if there is none)."""
    if eos_token_id is not None and eos_token_id in ids:
        return ids[: ids.index(eos_token_id) + 1]
    return ids
# END SOLUTION
