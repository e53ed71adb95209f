from solutions.inf10.kv_cache import *  # noqa: F401,F403
from solutions.inf10.kv_cache import KVCache as _KVCache

import torch


class KVCache(_KVCache):
    def update(self, layer_idx, k, v):
        batch, num_kv_heads, _, head_dim = self.k[layer_idx].shape
        for x in (k, v):
            if x.dim() != 4 or (x.shape[0], x.shape[1], x.shape[3]) != (batch, num_kv_heads, head_dim):
                raise ValueError(f"expected [{batch}, {num_kv_heads}, num_new, {head_dim}], got {list(x.shape)}")
        start = self.lengths[layer_idx]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > max_len={self.max_len}")
        # wrong: a new buffer every step (old slots + new + the unused tail), O(max_len) copying per token
        self.k[layer_idx] = torch.cat([self.k[layer_idx][:, :, :start], k, self.k[layer_idx][:, :, end:]], dim=2)
        self.v[layer_idx] = torch.cat([self.v[layer_idx][:, :, :start], v, self.v[layer_idx][:, :, end:]], dim=2)
        self.lengths[layer_idx] = end
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]
