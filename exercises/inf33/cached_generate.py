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
from lab.errors import NotStarted

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

    1. Take the longest cached prefix of prompt_ids[:-1] (`cache.acquire_prefix`): the last prompt token is
       always computed, its logits give the first new token.
    2. Allocate blocks for the rest of prompt + max_new_tokens (`cache.allocate`); if the pool is short,
       release what you took and raise RuntimeError("out of KV blocks ...").
    3. Prefill only the uncached tokens through `kv.view(block_table, num_cached)` (lab.model's `cache`:
       positions start at num_cached), `commit` the prompt, decode up to max_new_tokens (stop after the
       EOS, kept), commit every computed token, and release the table last block first.
    Raises ValueError for an empty prompt or max_new_tokens < 1.
    Hint: block_table = the prefix's blocks + the new ones; the view reads it at every step.
    """
    raise NotStarted("inf33: implement generate_with_prefix_cache")
