"""inf33 · Generation that skips the cached part of the prompt.

A chat service sends the same system prompt (and the same earlier turns) again and again. With a prefix
cache the K/V of those tokens is computed once: a request looks up its longest cached prefix, takes those
blocks by reference, and prefills only the rest. Time to first token then scales with the *new* tokens.
The K/V lives in a `lab.block_kv.BlockKV` pool; the `PrefixCache` decides which blocks hold what.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lab.block_kv import BlockKV

from .prefix_cache import PrefixCache


@dataclass(frozen=True)
class CachedGeneration:
    """tokens: the greedy new tokens; num_cached_tokens: prompt tokens whose K/V came from the cache."""

    tokens: list[int]
    num_cached_tokens: int


@torch.inference_mode()
def generate_with_prefix_cache(model: torch.nn.Module, cache: PrefixCache, kv: BlockKV, prompt_ids: Sequence[int],
                               max_new_tokens: int, eos_token_id: int | None = None) -> CachedGeneration:
    """Greedy generation of one request through the prefix cache; the same tokens as without it.

    - Reuses the longest cached prefix of prompt_ids[:-1] (`cache.acquire_prefix`; the last prompt token
      is always computed, its logits give the first new token) and computes K/V for exactly the other
      prompt tokens, in one forward; then one forward per new token. num_cached_tokens = the reused tokens.
    - The request holds blocks for prompt + max_new_tokens tokens throughout (the reused ones, then new ones
      from `cache.allocate`). If the cache cannot provide them, it gives back what it took and raises
      RuntimeError("out of KV blocks ...").
    - K/V are read and written in `kv` through the request's block table: `kv.view(block_table, num_cached)`
      is a lab.model `cache` whose positions start at num_cached.
    - Stops after max_new_tokens tokens or the EOS (kept). Before returning, registers the full blocks of
      every token whose K/V was computed (`cache.commit`: the prompt and all new tokens but the last).
      Every block it took is released, last block first, whether it returns or raises.
    Raises ValueError for an empty prompt or max_new_tokens < 1.
    """
    # BEGIN SOLUTION
    if len(prompt_ids) == 0 or max_new_tokens < 1:
        raise ValueError(f"need a non-empty prompt and max_new_tokens >= 1, got {len(prompt_ids)} tokens and "
                         f"{max_new_tokens}")
    prompt = [int(t) for t in prompt_ids]
    block_table = cache.acquire_prefix(prompt[:-1])
    num_cached = len(block_table) * cache.block_size
    num_blocks = -(-(len(prompt) + max_new_tokens) // cache.block_size)
    fresh = cache.allocate(num_blocks - len(block_table))
    if fresh is None:
        cache.release(block_table[::-1])
        raise RuntimeError(f"out of KV blocks: the request needs {num_blocks - len(block_table)} new blocks, "
                           f"{cache.num_available} are available")
    block_table += fresh
    view = kv.view(block_table, num_cached)
    device = next(model.parameters()).device
    ids = torch.tensor([prompt[num_cached:]], device=device)
    tokens = []
    try:
        next_id = model(ids, cache=view, last_only=True)[0, -1].argmax()
        cache.commit(block_table, prompt)
        while True:
            tokens.append(int(next_id))
            if len(tokens) == max_new_tokens or tokens[-1] == eos_token_id:
                break
            next_id = model(next_id.view(1, 1), cache=view, last_only=True)[0, -1].argmax()
        cache.commit(block_table, prompt + tokens[:-1])              # the last token's K/V is not computed
    finally:
        cache.release(block_table[::-1])
    return CachedGeneration(tokens, num_cached)
    # END SOLUTION
