"""inf02 · Chunked prefill: the prompt in pieces of at most `chunk_size` tokens, with the same result.

A 32k-token prefill in one forward holds up every other request for its whole duration and needs
activations for all 32k tokens at once. Split into chunks, each chunk attends to the K/V the earlier
chunks left in the cache, exactly as one long forward would; an engine can then run a chunk, serve a few
decode steps, run the next chunk (Sarathi-Serve's "stall-free batching", vLLM's chunked prefill). The
logits and the cache must come out the same as one-shot prefill, up to float rounding.
"""
from __future__ import annotations

import torch

from lab.errors import NotStarted


@torch.inference_mode()
def chunked_prefill(model: torch.nn.Module, prompt_ids: torch.Tensor, cache, chunk_size: int,
                    last_only: bool = False) -> torch.Tensor:
    """Prefill `prompt_ids` into `cache` with forwards of at most `chunk_size` new tokens each.

    model:      a `lab.model.LlamaModel`.
    prompt_ids: int64 [batch, prompt_len] (same length for every sequence, no padding).
    cache:      a KV cache in the model's dynamic mode (e.g. `lab.cache.DynamicCache`), empty or already
                holding earlier tokens of these sequences; the prompt continues after them.
    chunk_size: the most tokens one forward may take (>= 1); the last chunk may be shorter.
    last_only:  return only the last position's logits.
    Returns the logits [batch, prompt_len, vocab_size] ([batch, 1, vocab_size] with last_only), equal to
    `model(prompt_ids, cache=cache)` in one forward (up to float rounding); afterwards the cache holds the
    prompt after its earlier tokens, as one forward would leave it. Raises ValueError on chunk_size < 1
    or a prompt that is not 2-D and non-empty, before any forward. Hints: README.md, "Hints".
    """
    raise NotStarted("inf02: implement chunked_prefill")
