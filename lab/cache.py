"""The lab's own KV cache, for topics that are not about caches (inf11-inf13, inf21, inf23...).

You build your own in inf10; this one lets every later topic stand on its own. One preallocated buffer
pair per layer, [batch, num_kv_heads, max_len, head_dim], in both of the model's modes (`lab.model`):
- dynamic: `update(layer_idx, k, v)` appends after `seq_len` and returns views of the filled slots;
- static: `update(layer_idx, k, v, cache_position)` writes at the given slots and returns the whole
  buffers, so a compiled decode step sees the same shapes every time.
Invariant: in dynamic mode, every layer holds exactly `seq_len` tokens between forwards.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig


class StaticCache:
    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        if max_len <= 0 or batch <= 0:
            raise ValueError(f"batch and max_len must be positive, got batch={batch}, max_len={max_len}")
        shape = (batch, config.num_kv_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.max_len = max_len
        self._lengths = [0] * config.num_layers

    @property
    def seq_len(self) -> int:
        return self._lengths[0]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
               cache_position: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache_position is not None:
            self.k[layer_idx].index_copy_(2, cache_position, k)
            self.v[layer_idx].index_copy_(2, cache_position, v)
            return self.k[layer_idx], self.v[layer_idx]
        start, end = self._lengths[layer_idx], self._lengths[layer_idx] + k.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: {start} tokens stored + {k.shape[2]} new > max_len {self.max_len}")
        self.k[layer_idx][:, :, start:end] = k
        self.v[layer_idx][:, :, start:end] = v
        self._lengths[layer_idx] = end
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]

    def reset(self) -> None:
        self._lengths = [0] * len(self._lengths)
