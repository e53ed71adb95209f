"""A pool of fixed-size KV blocks, and a request's view of it as the model's cache (inf33; inf31 builds its own).

The pool holds K and V for `num_blocks` blocks of `block_size` token slots, per layer
`[num_blocks, block_size, num_kv_heads, head_dim]`. A request owns a *block table*: the list of block ids
holding its tokens in order, token `p` in slot `p % block_size` of block `block_table[p // block_size]`.
Two requests whose prompts start alike can share the first blocks of their tables (a prefix cache).

`pool.view(block_table, num_cached)` plays the model's `Cache` (lab/model.py) for one request: its
`seq_len` is `num_cached`; `update(layer, k, v)` writes the new tokens' K/V into the table's slots after
the cached ones and returns the request's K/V gathered through the table, `[1, num_kv_heads, seq_len + T, D]`.
After the last layer the view's `seq_len` advances, so the same view serves every decode step. The table
is read at each update: append block ids to it as the request grows.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig


class BlockKV:
    def __init__(self, config: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks} and {block_size}")
        self.config, self.num_blocks, self.block_size = config, num_blocks, block_size
        shape = (num_blocks, block_size, config.num_kv_heads, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]

    def view(self, block_table: list[int], num_cached: int) -> "BlockKVView":
        return BlockKVView(self, block_table, num_cached)

    def check_table(self, block_table: list[int], end: int) -> None:
        """ValueError unless the table has blocks for positions 0..end-1."""
        if end > len(block_table) * self.block_size:
            raise ValueError(f"positions up to {end} need {-(-end // self.block_size)} blocks, the table has "
                             f"{len(block_table)}")


class BlockKVView:
    """One request's cache: `seq_len` tokens cached in the blocks of `block_table`."""

    def __init__(self, pool: BlockKV, block_table: list[int], num_cached: int):
        self.pool, self.block_table, self._seq_len = pool, block_table, num_cached

    @property
    def seq_len(self) -> int:
        return self._seq_len

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # k, v: [1, num_kv_heads, T, D]. Written a block at a time (a run of positions that shares a block is
        # one slice of it), read back as whole blocks: block-level copies, not inf31's per-token slots.
        if k.shape[0] != 1:
            raise ValueError(f"a block view serves one request: k must be [1, heads, T, D], got {list(k.shape)}")
        pool, start = self.pool, self._seq_len
        end, size = start + k.shape[2], pool.block_size
        pool.check_table(self.block_table, end)
        position = start
        while position < end:                                   # the new tokens, block by block
            block, offset = self.block_table[position // size], position % size
            count = min(size - offset, end - position)
            new = slice(position - start, position - start + count)
            pool.k[layer_idx][block, offset:offset + count] = k[0, :, new].transpose(0, 1)
            pool.v[layer_idx][block, offset:offset + count] = v[0, :, new].transpose(0, 1)
            position += count
        blocks = torch.tensor(self.block_table[:-(-end // size)], dtype=torch.long, device=pool.k[layer_idx].device)
        keys = pool.k[layer_idx][blocks].flatten(0, 1)[:end]          # [end, num_kv_heads, D], oldest first
        values = pool.v[layer_idx][blocks].flatten(0, 1)[:end]
        if layer_idx == pool.config.num_layers - 1:
            self._seq_len = end
        return keys.transpose(0, 1)[None], values.transpose(0, 1)[None]
