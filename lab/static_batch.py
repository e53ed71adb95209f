"""Static batching, the lab's version: the baseline continuous batching (inf30) is measured against.

Take the requests `batch_size` at a time in arrival order, prefill each batch in one forward and decode
one token per row per forward until the batch's longest request is done. A request that finished early
keeps its row (its tokens are computed and thrown away), and the next batch waits for the whole previous
one: the waste continuous batching removes. Requests are anything with `request_id`, `prompt_ids`,
`max_new_tokens` and `arrival_step` (arrival times only order them: a static batch does not wait).

Deliberately not inf12's left padding: here prompts are *right*-padded, so each row's cache has a hole of
padding slots between its prompt and its new tokens, which the attention mask hides; the first new token
is read at each row's own last prompt position. The same forwards and the same tokens; a lesson of its own
(inf12) is how to do it with left padding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lab.cache import DynamicCache

if TYPE_CHECKING:
    from lab.model import LlamaModel


@torch.inference_mode()
def static_generate(model: LlamaModel, requests: Sequence, batch_size: int, eos_token_id: int | None = None,
                    pad_id: int = 0) -> dict[int, list[int]]:
    """Greedy tokens of every request, by static batches of `batch_size`: {request_id: new token ids}."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    weight, outputs = next(model.parameters()), {}
    ordered = sorted(requests, key=lambda r: r.arrival_step)
    for first in range(0, len(ordered), batch_size):
        batch = ordered[first:first + batch_size]
        lengths = torch.tensor([len(r.prompt_ids) for r in batch])
        width, steps = int(lengths.max()), max(r.max_new_tokens for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for row, r in enumerate(batch):
            ids[row, :lengths[row]] = torch.tensor(list(r.prompt_ids))
        slot = torch.arange(width)
        mask = (slot[None, :] < lengths[:, None]).long()                    # [B, width], 0 on the padding
        positions = slot.expand(len(batch), -1)                             # prompts start at position 0
        ids, mask, positions = ids.to(weight.device), mask.to(weight.device), positions.to(weight.device)
        cache = DynamicCache(model.config, len(batch), width + steps, weight.dtype, weight.device)
        logits = model(ids, positions=positions, cache=cache, attention_mask=mask)       # [B, width, vocab]
        last = (lengths - 1).to(weight.device)
        next_ids = logits[torch.arange(len(batch), device=weight.device), last].argmax(-1)
        new, positions = [next_ids], last[:, None] + 1                      # each row's next position
        for _ in range(steps - 1):
            if eos_token_id is not None and bool((torch.stack(new, 1) == eos_token_id).any(1).all()):
                break                                                          # every row has its EOS
            mask = F.pad(mask, (0, 1), value=1)
            next_ids = model(next_ids[:, None], positions=positions, cache=cache, attention_mask=mask,
                             last_only=True)[:, -1].argmax(-1)
            new.append(next_ids)
            positions = positions + 1
        for r, row in zip(batch, torch.stack(new, dim=1).tolist()):
            row = row[:r.max_new_tokens]
            outputs[r.request_id] = row[:row.index(eos_token_id) + 1] if eos_token_id in row else row
    return outputs
