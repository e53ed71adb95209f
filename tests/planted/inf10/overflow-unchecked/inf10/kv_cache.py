from solutions.inf10.kv_cache import *  # noqa: F401,F403
from solutions.inf10.kv_cache import KVCache as _KVCache


class KVCache(_KVCache):
    def update(self, layer_idx, k, v):
        start = self.lengths[layer_idx]
        end = start + k.shape[2]
        self.lengths[layer_idx] = end                                     # wrong: counted before it fits
        self.k[layer_idx][:, :, start:end] = k
        self.v[layer_idx][:, :, start:end] = v
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]
