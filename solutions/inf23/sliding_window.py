"""inf23 · Sliding-window attention with a ring-buffer KV cache: memory that stops growing.

With a window of W tokens, the token at position p attends only to positions p - W + 1 .. p (itself and
the W - 1 before it; Mistral 7B, Gemma 2/3's local layers). A decode step then needs only the last W
tokens' keys and values, so the cache holds W slots per layer, whatever the length of the sequence:
the token at position p is written into slot p % W, over the one W positions before it, which has just
left the window. Keys are stored after RoPE, so each still carries its own absolute position, and
attention does not care in which order the slots hold them.

In the lab's model (`lab.model`) the cache plugs in through the `cache` argument and the window through
`model.attention`:

    model.attention = functools.partial(sliding_window_attention, window=W)
    cache = RingKVCache(model.config, batch, W)
    logits = model(prompt_ids, cache=cache)              # prefill: every prompt token, window-masked
    logits = model(next_ids, cache=cache)                # decode: one token, W slots at most
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from lab.config import ModelConfig
from lab.model import LlamaModel


def window_mask(num_queries: int, num_keys: int, window: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Which keys each query may see under causal sliding-window attention, as a bool [num_queries, num_keys].

    The keys are contiguous positions and the queries are the last num_queries of them: query t sits at
    position num_keys - num_queries + t and sees key s when 0 <= (its position) - s < window.
    Raises ValueError unless 1 <= num_queries <= num_keys and window >= 1.
    """
    # BEGIN SOLUTION
    if not 1 <= num_queries <= num_keys or window < 1:
        raise ValueError(f"need 1 <= num_queries <= num_keys and window >= 1, got num_queries={num_queries}, "
                         f"num_keys={num_keys}, window={window}")
    q_pos = num_keys - num_queries + torch.arange(num_queries, device=device)        # [T]
    distance = q_pos[:, None] - torch.arange(num_keys, device=device)[None, :]      # [T, S]
    return (distance >= 0) & (distance < window)
    # END SOLUTION


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                             window: int) -> torch.Tensor:
    """Causal attention in which each query sees only the `window` most recent keys up to its own position.

    q: [batch, num_heads, T, head_dim]; k, v: [batch, num_kv_heads, S, head_dim] with num_heads a multiple
    of num_kv_heads (grouped-query attention: don't repeat K/V in memory); mask: bool [batch or 1, 1, T, S]
    (True = may attend) or None. The keys are read as contiguous positions whose last T are the queries'
    (`window_mask`), and the result is softmax(q k^T / sqrt(head_dim)) v over the keys that both `mask`
    and the window allow. One exception makes a ring buffer work: with T == 1 and S <= window every key is
    in the window, in any order. Returns [batch, num_heads, T, head_dim] in q's dtype.
    Raises ValueError unless q is 4-D, k and v share one 4-D shape, and num_heads % num_kv_heads == 0.
    Speed counts on a GPU (a decode step against full attention): see the lesson's hints.
    """
    # BEGIN SOLUTION
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[1] % k.shape[1]:
        raise ValueError(f"need q [B, H, T, D] and k, v [B, Hkv, S, D] with H a multiple of Hkv; got "
                         f"{list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
    num_queries, num_keys = q.shape[2], k.shape[2]
    if num_queries > 1 or num_keys > window:
        band = window_mask(num_queries, num_keys, window, q.device)[None, None]     # [1, 1, T, S]
        mask = band if mask is None else mask & band
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
    # END SOLUTION


class RingKVCache:
    """A KV cache of `window` slots per layer that wraps around: bounded memory for sliding-window attention.

    config: the model's shape; batch: sequences side by side; window: slots per layer (= the attention
    window W, >= 1); dtype, device: of the buffers.
    Attributes the tests read:
      k, v:    lists of num_layers tensors [batch, num_kv_heads, window, head_dim], allocated once in
               __init__ and never replaced or grown.
      lengths: list of num_layers ints, the tokens each layer has been given so far (may exceed window).
    Follows the dynamic mode of `lab.model.Cache`: `seq_len` counts every token seen, so the model gives
    the next token its true position, while at most `window` of them are kept.
    """

    def __init__(self, config: ModelConfig, batch: int, window: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        # BEGIN SOLUTION
        if batch <= 0 or window <= 0:
            raise ValueError(f"batch and window must be positive, got batch={batch}, window={window}")
        shape = (batch, config.num_kv_heads, window, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.lengths = [0] * config.num_layers
        self.window = window
        # END SOLUTION

    @property
    def seq_len(self) -> int:
        """Tokens seen per sequence so far (all of them, not only those still stored)."""
        # BEGIN SOLUTION
        return self.lengths[-1]
        # END SOLUTION

    @property
    def nbytes(self) -> int:
        """Bytes of all K and V buffers: 2 * num_layers * batch * num_kv_heads * window * head_dim * itemsize."""
        # BEGIN SOLUTION
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
        # END SOLUTION

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's K/V for one layer (the token at position p into slot p % window); return what to attend.

        k, v: [batch, num_kv_heads, T, head_dim]. Three cases are allowed:
          - the cache has not wrapped and stored + T <= window: returns slots 0 .. stored + T - 1, oldest
            first (views of the buffers), like a plain cache;
          - a prefill of any T into an empty layer: keeps only the last min(T, window) tokens and returns
            k, v themselves (all T: the window mask in the attention picks each query's keys);
          - a single token (T == 1): returns the min(stored + 1, window) slots holding the last tokens, in
            slot order (views of the buffers).
        Anything else (several tokens into a non-empty cache that would wrap) raises ValueError, as do k, v
        whose batch, num_kv_heads or head_dim differ from the buffers'.
        """
        # BEGIN SOLUTION
        buf_k, buf_v = self.k[layer_idx], self.v[layer_idx]
        batch, num_kv_heads, window, head_dim = buf_k.shape
        for name, x in (("k", k), ("v", v)):
            if x.dim() != 4 or (x.shape[0], x.shape[1], x.shape[3]) != (batch, num_kv_heads, head_dim):
                raise ValueError(f"layer {layer_idx}: {name} must be [batch={batch}, num_kv_heads={num_kv_heads}, "
                                 f"T, head_dim={head_dim}], got {list(x.shape)}")
        stored, num_new = self.lengths[layer_idx], k.shape[2]
        end = stored + num_new
        if end <= window:                                     # not wrapped yet: a plain cache
            buf_k[:, :, stored:end] = k
            buf_v[:, :, stored:end] = v
            self.lengths[layer_idx] = end
            return buf_k[:, :, :end], buf_v[:, :, :end]
        if stored == 0:                                       # long prefill: keep the last `window` tokens
            positions = torch.arange(num_new - window, num_new, device=buf_k.device)
            buf_k[:, :, positions % window] = k[:, :, -window:]
            buf_v[:, :, positions % window] = v[:, :, -window:]
            self.lengths[layer_idx] = end
            return k, v
        if num_new != 1:
            raise ValueError(f"layer {layer_idx}: {num_new} tokens into a ring cache holding {stored} with "
                             f"window {window}: prefill once into an empty cache, then one token per step")
        slot = stored % window                                # overwrite the token that left the window
        buf_k[:, :, slot] = k[:, :, 0]
        buf_v[:, :, slot] = v[:, :, 0]
        self.lengths[layer_idx] = end
        return buf_k, buf_v
        # END SOLUTION


@torch.inference_mode()
def sliding_window_decode(model: LlamaModel, prompt: list[int], max_new_tokens: int, window: int,
                          eos_token_id: int | None = None) -> list[int]:
    """Greedy decoding with sliding-window attention and a RingKVCache of `window` slots: the new token ids.

    model: the lab's LlamaModel (its `attention` is restored afterwards, even on error); prompt: token
    ids, not empty. Batch 1, the cache in the model's dtype and on its device. Prefills the prompt once,
    then feeds one token per step; stops after `eos_token_id` (included in the result) or
    `max_new_tokens` tokens (0 gives []). Raises ValueError for an empty prompt, window < 1 or
    max_new_tokens < 0.
    """
    # BEGIN SOLUTION
    if not prompt or window < 1 or max_new_tokens < 0:
        raise ValueError(f"need a non-empty prompt, window >= 1 and max_new_tokens >= 0; got "
                         f"{len(prompt)} prompt tokens, window={window}, max_new_tokens={max_new_tokens}")
    if max_new_tokens == 0:
        return []
    device = model.embed_tokens.weight.device
    cache = RingKVCache(model.config, 1, window, model.embed_tokens.weight.dtype, device)
    saved, model.attention = model.attention, functools.partial(sliding_window_attention, window=window)
    try:
        logits = model(torch.tensor([prompt], device=device), cache=cache, last_only=True)
        new = []
        while True:
            new.append(int(logits[0, -1].argmax()))
            if new[-1] == eos_token_id or len(new) == max_new_tokens:
                return new
            logits = model(torch.tensor([[new[-1]]], device=device), cache=cache)
    finally:
        model.attention = saved
    # END SOLUTION
