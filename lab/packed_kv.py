"""Per-request K/V storage for packed steps: many requests' tokens in one forward (inf30).

A packed step runs the new tokens of several requests as one row, `input_ids [1, num_tokens]`: request
after request, each contributing a chunk (a whole prompt, part of one, or one decode token). This store
keeps each request's K/V in its own growing buffers and plays the model's `Cache` (lab/model.py) for
one step:

    kv.begin_step([(request_id, start_position, num_new), ...])   # in the packed order
    logits = model(input_ids, positions=..., cache=kv, attention_mask=mask_4d)

`update(layer, k, v)` splits this step's k, v ([1, num_kv_heads, num_tokens, D]) by chunk, writes each
after its request's stored tokens and returns the keys/values every query may need, laid out request by
request: for each chunk, its request's tokens 0 .. start_position + num_new - 1
([1, num_kv_heads, seq_len + num_tokens, D] with seq_len = the sum of start_positions). Which query sees
which key is the mask's business, not the store's.

It gathers (copies) every scheduled request's K/V each step, and its buffers are per request: simple, and
exactly what PagedAttention (inf31) removes. Invariant: after a step, a request holds
start_position + num_new tokens in every layer; `start_position` must equal what it holds (0 for a new
or recomputed request, after `drop`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from lab.config import ModelConfig


class PackedKV:
    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", initial_capacity: int = 64):
        self.config, self.dtype, self.device = config, dtype, torch.device(device)
        self.initial_capacity = initial_capacity
        self._k: dict[int, list[torch.Tensor]] = {}          # request -> per layer [num_kv_heads, capacity, D]
        self._v: dict[int, list[torch.Tensor]] = {}
        self._len: dict[int, int] = {}
        self._step: list[tuple[int, int, int]] = []

    def num_stored(self, request_id: int) -> int:
        return self._len.get(request_id, 0)

    @property
    def request_ids(self) -> list[int]:
        return list(self._len)

    def drop(self, request_id: int) -> None:
        """Forget a request's K/V (it finished or was preempted); unknown ids are ignored."""
        for store in (self._k, self._v, self._len):
            store.pop(request_id, None)

    def begin_step(self, chunks: Sequence[tuple[int, int, int]]) -> None:
        """Declare the next forward's chunks: (request_id, start_position, num_new) in packed order."""
        seen = set()
        for request_id, start, num_new in chunks:
            if request_id in seen:
                raise ValueError(f"request {request_id} appears twice in one step")
            seen.add(request_id)
            if num_new < 1:
                raise ValueError(f"request {request_id}: a chunk needs at least one token, got {num_new}")
            if start != self.num_stored(request_id):
                raise ValueError(f"request {request_id}: chunk starts at position {start} but its cache holds "
                                 f"{self.num_stored(request_id)} tokens (a recomputed request must be dropped "
                                 f"first and restart at 0)")
            self._reserve(request_id, start + num_new)
        self._step = [(request_id, start, num_new) for request_id, start, num_new in chunks]

    @property
    def seq_len(self) -> int:
        return sum(start for _, start, _ in self._step)

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num_tokens = sum(n for _, _, n in self._step)
        if k.shape[0] != 1 or k.shape[2] != num_tokens:
            raise ValueError(f"a packed step's k must be [1, heads, {num_tokens}, D], got {list(k.shape)}")
        keys, values, offset = [], [], 0
        for request_id, start, num_new in self._step:
            end = start + num_new
            buf_k, buf_v = self._k[request_id][layer_idx], self._v[request_id][layer_idx]
            buf_k[:, start:end] = k[0, :, offset:offset + num_new]
            buf_v[:, start:end] = v[0, :, offset:offset + num_new]
            keys.append(buf_k[:, :end])
            values.append(buf_v[:, :end])
            offset += num_new
        if layer_idx == self.config.num_layers - 1:           # the step is stored in every layer now
            for request_id, start, num_new in self._step:
                self._len[request_id] = start + num_new
        return torch.cat(keys, dim=1)[None], torch.cat(values, dim=1)[None]

    def _reserve(self, request_id: int, num_tokens: int) -> None:
        c = self.config
        old = self._k.get(request_id)
        capacity = old[0].shape[1] if old else 0
        if num_tokens <= capacity:
            return
        new_capacity = max(num_tokens, 2 * capacity, self.initial_capacity)    # amortized growth
        shape = (c.num_kv_heads, new_capacity, c.head_dim)
        for store in (self._k, self._v):
            fresh = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(c.num_layers)]
            if old:
                for layer, buf in enumerate(store[request_id]):
                    fresh[layer][:, :capacity] = buf
            store[request_id] = fresh
        self._len.setdefault(request_id, 0)
