"""inf10 · Cached decoding: prefill the prompt once, then feed one token per step.

Generation becomes one prefill (a forward over the whole prompt, which fills the cache) and then decode
steps, each a forward over one token per sequence. Step t now costs a forward over 1 token reading the
P + t cached K/V, instead of a forward over P + t tokens: the work per generated token no longer grows
with the context (only attention's reads do). The model places each new token at RoPE position
`cache.seq_len` by itself: the cache's length *is* the position of the next token. The model's forward
and its arguments are described at the top of `lab/model.py`.
"""
from __future__ import annotations

import torch

from lab.errors import NotStarted

from .kv_cache import KVCache


def _model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    param = next(model.parameters())
    return param.dtype, param.device


@torch.inference_mode()
def prefill(model: torch.nn.Module, prompt_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Run the prompts through the model once, storing their K/V in `cache`; return the next-token logits.

    prompt_ids: [batch, prompt_len] int64, on the model's device (prompts of equal length).
    cache:      an empty KVCache for this model with the same batch and max_len >= prompt_len.
    returns:    logits [batch, vocab_size] at the last prompt position (what predicts the first new token).
    Raises ValueError if prompt_ids is not a non-empty [batch, prompt_len] tensor.
    """
    raise NotStarted("inf10: implement prefill")


@torch.inference_mode()
def decode_step(model: torch.nn.Module, token_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed one new token per sequence, at position `cache.seq_len`, and return the next-token logits.

    token_ids: [batch] int64, the token each sequence just generated.
    cache:     holding every earlier token of each sequence (prompt and generated so far).
    returns:   logits [batch, vocab_size] for the token after `token_ids`.
    The cache grows by one slot; the model attends over all of it.
    """
    raise NotStarted("inf10: implement decode_step")


@torch.inference_mode()
def kv_cache_decode(model: torch.nn.Module, prompt_ids: list[int] | torch.Tensor, max_new_tokens: int,
                    eos_token_id: int | None = None, max_len: int | None = None) -> list[int]:
    """Greedy generation with your KVCache: one prefill, then one single-token forward per new token.

    Returns the new token ids only, exactly as inf00's `greedy_generate` (the no-cache loop) does:
    stop after `max_new_tokens` tokens, or right after `eos_token_id` (included). Batch 1.
    model:      a `lab.model.LlamaModel` (its `config` sizes the cache; its first parameter gives
                dtype and device).
    prompt_ids: 1-D token ids of one prompt (a list or an int64 tensor).
    max_len:    the cache's capacity in tokens; default prompt_len + max_new_tokens.
    No forward runs for the last new token: nothing would use its logits.
    Raises ValueError for an empty prompt, a negative max_new_tokens, or a max_len too small to hold
    the prompt and every token fed back (prompt_len + max_new_tokens - 1, and never less than prompt_len),
    before running the model: the check holds for max_new_tokens=0 too, which otherwise returns [].
    Hints: README.md, "Hints".
    """
    raise NotStarted("inf10: implement kv_cache_decode")
