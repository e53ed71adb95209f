"""inf10 · KV cache: keep every layer's keys and values so each decode step computes only the new token's.

Without a cache, decode step t runs the model over all P + t tokens again (inf00). With one, it runs
over the single new token: its query attends to the keys and values stored for every earlier token,
which never change (causal attention). The price is memory, known in advance:

    bytes = 2 (K and V) * num_layers * num_kv_heads * head_dim * max_len * batch * bytes per value

This cache allocates all of it once, at construction, one K and one V buffer per layer of shape
[batch, num_kv_heads, max_len, head_dim], and writes each step's K/V in place: nothing is allocated or
copied while generating, unlike `torch.cat`, which copies everything stored at every step. With
grouped-query attention (num_kv_heads < num_heads) only the KV heads are stored; the model's attention
shares each of them among num_heads // num_kv_heads query heads.

It follows the dynamic mode of `lab.model.Cache`, so `model(ids, cache=cache)` uses it as it is.
Invariant: between two forwards every layer holds `seq_len` tokens.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig


class KVCache:
    """Preallocated K/V buffers for every layer of one model, for `batch` sequences of up to `max_len` tokens.

    config:  the model's shape (num_layers, num_kv_heads, head_dim are what the cache needs).
    batch:   sequences stored side by side (all of the same length).
    max_len: token slots per sequence; storing more raises ValueError.
    dtype, device: of the buffers; use the model's (K/V arrive in the model's dtype).

    Attributes the tests read:
      k, v:    lists of num_layers tensors, each [batch, num_kv_heads, max_len, head_dim], allocated once
               in __init__ and never replaced (slots past the stored length hold anything).
      lengths: list of num_layers ints, the tokens stored in each layer.
      max_len: as given.
    Raises ValueError if batch or max_len is not positive. Hints: README.md, "Hints".
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        # BEGIN SOLUTION
        if batch <= 0 or max_len <= 0:
            raise ValueError(f"batch and max_len must be positive, got batch={batch}, max_len={max_len}")
        shape = (batch, config.num_kv_heads, max_len, config.head_dim)       # GQA: KV heads, not query heads
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.lengths = [0] * config.num_layers
        self.max_len = max_len
        # END SOLUTION

    @property
    def seq_len(self) -> int:
        """Tokens stored per sequence so far (0 for a new cache).

        The model reads it once per forward, before layer 0, as the position of the first new token; it must
        also be right between forwards (every layer then holds the same number of tokens).
        """
        # BEGIN SOLUTION
        return self.lengths[-1]
        # END SOLUTION

    @property
    def nbytes(self) -> int:
        """Bytes held by all the buffers, K and V of every layer (full capacity, not just what is filled)."""
        # BEGIN SOLUTION
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
        # END SOLUTION

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys and values for one layer after those already stored; return all of them.

        k, v:    [batch, num_kv_heads, num_new, head_dim], the new tokens' K and V (num_new = prompt length
                 at prefill, 1 per decode step).
        returns: (keys, values), each [batch, num_kv_heads, stored + num_new, head_dim]: *views* of this
                 layer's buffers (slices, no copy), oldest token first.
        Raises ValueError, naming max_len and leaving the cache unchanged, if the new tokens do not fit,
        or if k or v does not have the buffers' batch, num_kv_heads and head_dim (never broadcast them in).
        """
        # BEGIN SOLUTION
        buf_k, buf_v = self.k[layer_idx], self.v[layer_idx]
        batch, num_kv_heads, _, head_dim = buf_k.shape
        for name, x in (("k", k), ("v", v)):
            if x.dim() != 4 or (x.shape[0], x.shape[1], x.shape[3]) != (batch, num_kv_heads, head_dim):
                raise ValueError(f"layer {layer_idx}: {name} must be [batch={batch}, num_kv_heads={num_kv_heads}, "
                                 f"num_new, head_dim={head_dim}], got {list(x.shape)}")
        start = self.lengths[layer_idx]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full at layer {layer_idx}: {start} tokens stored + {k.shape[2]} new "
                             f"> max_len={self.max_len}; build the cache with a larger max_len")
        buf_k[:, :, start:end] = k
        buf_v[:, :, start:end] = v
        self.lengths[layer_idx] = end
        return buf_k[:, :, :end], buf_v[:, :, :end]
        # END SOLUTION
