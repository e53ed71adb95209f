from solutions.inf10.kv_cache import *  # noqa: F401,F403

import torch


class KVCache:
    def __init__(self, config, batch, max_len, dtype=torch.float32, device="cpu"):
        shape = (batch, config.num_heads, max_len, config.head_dim)          # wrong: query heads
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.lengths = [0] * config.num_layers
        self.max_len = max_len
        self.groups = config.num_heads // config.num_kv_heads

    @property
    def seq_len(self):
        return self.lengths[-1]

    @property
    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def update(self, layer_idx, k, v):
        start = self.lengths[layer_idx]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > max_len={self.max_len}")
        self.k[layer_idx][:, :, start:end] = k.repeat_interleave(self.groups, dim=1)
        self.v[layer_idx][:, :, start:end] = v.repeat_interleave(self.groups, dim=1)
        self.lengths[layer_idx] = end
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]
