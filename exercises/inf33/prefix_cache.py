"""inf33 · A prefix cache over a pool of KV blocks: share by reference count, evict in LRU order.

Every block of the pool is in one of three states:
- free:    holds nothing anyone may read (in `free_ids`);
- in use:  `ref_count > 0`, read by that many requests (shared when > 1); never evicted;
- cached:  `ref_count == 0` but registered under its chain key, so a later request with the same
           prefix can take it back; it sits in an LRU queue and is evicted (unregistered, reused)
           only when no free block is left, least recently released first.
A block is registered (`commit`) once full and computed. The cache never trusts a key alone: a match
also compares the block's stored tokens and its parent's *serial* (a number given at registration and
never reused), so neither a hash collision nor a parent evicted and replaced by other tokens under the
same key can hand out wrong K/V: they cost a miss.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from lab.errors import NotStarted

from .block_hash import HashFn, block_hashes, default_hash


@dataclass(frozen=True)
class CachedBlock:
    """A registered block: its chain key, its tokens, its own serial and its parent's (None for a first block).
    Serials count registrations: a block evicted and registered again gets a new one."""

    key: int
    token_ids: tuple[int, ...]
    serial: int
    parent_serial: int | None


class PrefixCache:
    """Block bookkeeping for prefix caching (ids and counts only; the K/V itself lives in a `lab.block_kv.BlockKV`).

    Public state: `ref_count[block_id]`, `free_ids` (a list, FIFO), `lru` (an OrderedDict block_id -> None,
    least recently released first), `by_key` (key -> block_id), `block_info` (block_id -> CachedBlock),
    and the statistics `num_queried_tokens`, `num_hit_tokens` (over `acquire_prefix` calls).
    """

    def __init__(self, num_blocks: int, block_size: int, hash_fn: HashFn = default_hash):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks} and {block_size}")
        self.num_blocks, self.block_size, self.hash_fn = num_blocks, block_size, hash_fn
        self.ref_count = [0] * num_blocks
        self.free_ids: list[int] = list(range(num_blocks))
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.by_key: dict[int, int] = {}
        self.block_info: dict[int, CachedBlock] = {}
        self.num_queried_tokens = self.num_hit_tokens = 0
        self.next_serial = 0

    @property
    def num_available(self) -> int:
        """Blocks a request could get now: free ones plus evictable cached ones."""
        return len(self.free_ids) + len(self.lru)

    @property
    def hit_rate(self) -> float:
        return self.num_hit_tokens / self.num_queried_tokens if self.num_queried_tokens else 0.0

    def acquire_prefix(self, token_ids: Sequence[int]) -> list[int]:
        """The block ids holding the longest cached prefix of `token_ids` (full blocks only), each taken
        (ref_count + 1; a cached block leaves the LRU queue). Walk the chain keys (`block_hashes`) and stop
        at the first block that is not registered, or whose stored tokens differ, or whose parent_serial is
        not the serial of the block matched just before (None for the first). Adds len(token_ids) to
        num_queried_tokens and the matched tokens to num_hit_tokens.
        """
        raise NotStarted("inf33: implement PrefixCache.acquire_prefix")

    def allocate(self, num_blocks: int) -> list[int] | None:
        """`num_blocks` blocks to write into (ref_count 1 each), or None (taking nothing) if fewer than that
        are available. Free blocks first; then evict cached ones, least recently released first
        (unregister them: they can never be matched again).
        """
        raise NotStarted("inf33: implement PrefixCache.allocate")

    def commit(self, block_table: Sequence[int], token_ids: Sequence[int]) -> None:
        """Register the full blocks of a request whose first len(token_ids) tokens are computed into
        `block_table`, so later requests can share them. Walk the chain as `acquire_prefix` does: while a
        block's key is registered with the same tokens and parent serial, it is an equal block (maybe this
        very one): go on from its serial. At the first key nobody holds, register this table's block (a
        new serial, parent = the serial before) and go on. At a key held by a block with other tokens or
        another parent (a collision), stop: the rest stays unregistered (and is freed when released).
        """
        raise NotStarted("inf33: implement PrefixCache.commit")

    def release(self, block_ids: Sequence[int]) -> None:
        """Drop one reference to each block. At zero a registered block joins the LRU queue as the most
        recently released; an unregistered one goes back to `free_ids`. Release a table's blocks last
        first, so that a prefix's tail is evicted before its head.
        Raises ValueError for a block that is not in use.
        """
        raise NotStarted("inf33: implement PrefixCache.release")

