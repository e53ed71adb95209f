"""The lab's own KV caches, for topics that are not about caches (inf01, inf02, inf12, inf13, inf23...).

You build the real one in inf10 (preallocated buffers written in place); these let every other topic stand
on its own without showing how, and they are deliberately not it:
- `DynamicCache` (the model's dynamic mode, `lab.model`): `torch.cat`s each step's K/V onto what it
  holds, as transformers' DynamicCache does. Correct, and it copies everything stored at every step: the
  cost inf10's cache removes.
- `StaticCache` (the model's static mode only): `update(layer_idx, k, v, cache_position)` writes at the
  given slots of one preallocated buffer and returns the whole of it, so a compiled decode step (inf13)
  sees the same shapes every time. It keeps no length and cannot append: the model's dynamic mode needs
  a `DynamicCache` (or your inf10 KVCache).
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig


def _check_sizes(batch: int, max_len: int) -> None:
    if not isinstance(batch, int) or not isinstance(max_len, int) or batch <= 0 or max_len <= 0:
        raise ValueError(f"batch and max_len must be positive integers, got batch={batch!r}, max_len={max_len!r}")


class DynamicCache:
    """K/V of every layer, grown by concatenation. `max_len` bounds the tokens it accepts (as a
    preallocated cache's would), so code written against it runs on any cache of the lab.
    Invariant: between two forwards every layer holds `seq_len` tokens."""

    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        _check_sizes(batch, max_len)
        empty = (batch, config.num_kv_heads, 0, config.head_dim)
        self.k = [torch.empty(empty, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.empty(empty, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.max_len = max_len

    @property
    def seq_len(self) -> int:
        return self.k[-1].shape[2]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
               cache_position: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache_position is not None:
            raise ValueError("lab.cache.DynamicCache serves the model's dynamic mode (no cache_position); "
                             "for the static mode use lab.cache.StaticCache")
        held = self.k[layer_idx].shape[2]
        if held + k.shape[2] > self.max_len:
            raise RuntimeError(f"KV cache full: {held} tokens stored + {k.shape[2]} new > max_len {self.max_len}")
        self.k[layer_idx] = torch.cat([self.k[layer_idx], k.to(self.k[layer_idx].dtype)], dim=2)
        self.v[layer_idx] = torch.cat([self.v[layer_idx], v.to(self.v[layer_idx].dtype)], dim=2)
        return self.k[layer_idx], self.v[layer_idx]

    def reset(self) -> None:
        self.k = [t[:, :, :0] for t in self.k]
        self.v = [t[:, :, :0] for t in self.v]


class StaticCache:
    """Preallocated K and V buffers for the model's static mode, one pair per layer,
    `k[layer]`, `v[layer]`: [batch, num_kv_heads, max_len, head_dim]. `update(layer_idx, k, v,
    cache_position)` writes k, v at slots `cache_position` and returns the layer's whole buffers; the
    model's mask hides the slots not written yet."""

    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        _check_sizes(batch, max_len)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        for _ in range(config.num_layers):           # separate tensors: a CUDA graph marks each static
            for buffers in (self.k, self.v):
                buffers.append(torch.zeros(batch, config.num_kv_heads, max_len, config.head_dim, dtype=dtype,
                                           device=device))
        self.max_len = max_len

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
               cache_position: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache_position is None:
            raise ValueError("lab.cache.StaticCache serves the model's static mode only: pass cache_position "
                             "(the slots to write), or use lab.cache.DynamicCache for the dynamic mode")
        self.k[layer_idx].index_copy_(2, cache_position, k)
        self.v[layer_idx].index_copy_(2, cache_position, v)
        return self.k[layer_idx], self.v[layer_idx]
