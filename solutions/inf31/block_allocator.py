"""inf31 · The block allocator: KV memory handed out in fixed-size blocks, as an OS hands out pages.

A preallocated cache (inf10) reserves max_len token slots for every sequence, used or not. Here the KV
memory of every layer is one pool of `num_blocks` blocks of `block_size` token slots; a sequence holds a
*block table*, the list of its blocks in token order, and takes a new block only when its last one is
full. So a sequence of n tokens holds ceil(n / block_size) blocks and wastes less than one block.

Token t of a sequence lives in block `table[t // block_size]` at offset `t % block_size`, which is the
*slot* `table[t // block_size] * block_size + t % block_size` of the flat pool: the number the cache
writer (paged_attention.write_kv) and the attention kernel use.

Blocks are shared by reference count. `fork` gives a child sequence its parent's table (parallel
sampling, beam search: the prompt is stored once); a prefix cache (inf33) hands a new sequence blocks
that already hold its prefix (`allocate(..., shared_blocks=...)`). A block returns to the free list when
its count drops to zero. A shared block is never written: appending into a shared, partly filled last
block first moves the sequence to a private copy (copy-on-write) and tells the caller which block to
copy where, since the allocator owns ids and counts, not the KV tensors.

The scheduler (inf30) talks to it in sequence ids and token counts: `can_allocate` / `can_append`
before it admits or steps a sequence, `allocate`, `append_slots`, `fork`, `free`. Running out is
signalled by `OutOfBlocksError` (a `MemoryError`), raised before anything changes.

Invariants, after every public call:
  - every block is either free (ref count 0, on the free list) or held (ref count = the number of
    block-table entries, over all sequences, that name it), never both;
  - a sequence of n tokens holds exactly ceil(n / block_size) blocks;
  - a block that two tables share is never the partly filled last block that a sequence appends into.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence


class OutOfBlocksError(MemoryError):
    """The pool has too few free blocks for the request; the allocator is unchanged (the scheduler
    preempts a sequence, or waits, and tries again)."""


class BlockAllocator:
    """A pool of `num_blocks` KV blocks of `block_size` token slots, with a block table per sequence.

    Attributes (read by tests; change them only through the methods):
      num_blocks, block_size: as given.
      ref_counts: list of num_blocks ints, how many block-table entries name each block (0 = free).
      free_blocks: dict {block_id: None} used as an ordered set, least recently freed first: allocate
                   takes from the front, free appends at the back (a prefix cache evicts in this order).
      tables:      dict {seq_id: list of block ids}, each sequence's blocks in token order.
      seq_lens:    dict {seq_id: tokens stored}.
    """

    def __init__(self, num_blocks: int, block_size: int):
        if not isinstance(num_blocks, int) or not isinstance(block_size, int) or num_blocks <= 0 or block_size <= 0:
            raise ValueError(f"num_blocks and block_size must be positive ints, got {num_blocks!r}, {block_size!r}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.ref_counts = [0] * num_blocks
        self.free_blocks: dict[int, None] = dict.fromkeys(range(num_blocks))
        self.tables: dict[Hashable, list[int]] = {}
        self.seq_lens: dict[Hashable, int] = {}

    # ------------------------------------------------------------------------------------- queries
    @property
    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    def block_table(self, seq_id: Hashable) -> list[int]:
        """A copy of the sequence's block table."""
        return list(self.tables[self._known(seq_id)])

    def _known(self, seq_id: Hashable) -> Hashable:
        if seq_id not in self.tables:
            raise ValueError(f"unknown sequence {seq_id!r}: allocate it first "
                             f"(known: {sorted(self.tables, key=str)[:8]})")
        return seq_id

    def num_blocks_for(self, num_tokens: int) -> int:
        """Blocks that hold num_tokens tokens: ceil(num_tokens / block_size)."""
        return -(-num_tokens // self.block_size)

    def blocks_needed_to_append(self, seq_id: Hashable, num_tokens: int) -> int:
        """Free blocks that `append_slots(seq_id, num_tokens)` would take: the new blocks the longer sequence
        needs, plus one when num_tokens > 0 and the last block is partly filled and shared (ref count > 1),
        for its private copy. Raises ValueError for an unknown seq_id.
        """
        seq_len, table = self.seq_lens[self._known(seq_id)], self.tables[seq_id]
        # BEGIN SOLUTION
        new_blocks = self.num_blocks_for(seq_len + num_tokens) - len(table)
        is_partial = seq_len % self.block_size != 0
        needs_copy = num_tokens > 0 and is_partial and self.ref_counts[table[-1]] > 1
        return new_blocks + int(needs_copy)
        # END SOLUTION

    def can_allocate(self, num_tokens: int, shared_blocks: Sequence[int] = ()) -> bool:
        """Whether `allocate(seq_id, num_tokens, shared_blocks)` would find enough free blocks now.

        The blocks past the shared ones come from the free list; a shared block that is itself free
        (ref count 0, its contents kept by a prefix cache) leaves the free list too, so it counts as well.
        """
        # BEGIN SOLUTION
        num_revived = sum(self.ref_counts[b] == 0 for b in shared_blocks)
        return self.num_blocks_for(num_tokens) - len(shared_blocks) + num_revived <= self.num_free_blocks
        # END SOLUTION

    def can_append(self, seq_id: Hashable, num_tokens: int = 1) -> bool:
        """Whether `append_slots(seq_id, num_tokens)` would succeed now."""
        return self.blocks_needed_to_append(seq_id, num_tokens) <= self.num_free_blocks

    # ------------------------------------------------------------------------------------- changes
    def _take_free_block(self) -> int:
        block_id = next(iter(self.free_blocks))
        del self.free_blocks[block_id]
        self.ref_counts[block_id] = 1
        return block_id

    def _release(self, block_id: int) -> bool:
        """Drop one reference; True when the block became free."""
        self.ref_counts[block_id] -= 1
        if self.ref_counts[block_id] == 0:
            self.free_blocks[block_id] = None
            return True
        return False

    def allocate(self, seq_id: Hashable, num_tokens: int, shared_blocks: Sequence[int] = ()) -> list[int]:
        """Start sequence `seq_id` with room for its first num_tokens tokens (a prompt); return its table.

        shared_blocks: blocks that already hold the first len(shared_blocks) * block_size tokens (a
        prefix cache's hit); each gains a reference (a free one leaves the free list). The rest comes
        from the free list. Raises ValueError for a known seq_id, num_tokens < 0, or shared blocks that
        are out of range, repeated or more than num_tokens needs; OutOfBlocksError if the free blocks do not
        suffice. Either error leaves the allocator unchanged. The table is the shared blocks in order, then
        the new ones.
        """
        if seq_id in self.tables:
            raise ValueError(f"sequence {seq_id!r} already holds blocks: free it first, or use another id")
        if not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
        shared = list(shared_blocks)
        if len(set(shared)) != len(shared) or any(not 0 <= b < self.num_blocks for b in shared):
            raise ValueError(f"shared_blocks must be distinct block ids in [0, {self.num_blocks}), got {shared}")
        if len(shared) > self.num_blocks_for(num_tokens):
            raise ValueError(f"{len(shared)} shared blocks are more than {num_tokens} tokens need")
        # BEGIN SOLUTION
        if not self.can_allocate(num_tokens, shared):
            raise OutOfBlocksError(f"sequence {seq_id!r} of {num_tokens} tokens ({len(shared)} blocks shared) "
                                   f"needs more than the {self.num_free_blocks} free blocks")
        num_new = self.num_blocks_for(num_tokens) - len(shared)
        for block_id in shared:
            if self.ref_counts[block_id] == 0:                       # cached but free: leave the free list
                del self.free_blocks[block_id]
            self.ref_counts[block_id] += 1
        self.tables[seq_id] = shared + [self._take_free_block() for _ in range(num_new)]
        self.seq_lens[seq_id] = num_tokens
        return list(self.tables[seq_id])
        # END SOLUTION

    def append_slots(self, seq_id: Hashable, num_tokens: int = 1) -> tuple[list[int], list[tuple[int, int]]]:
        """Make room for num_tokens more tokens of `seq_id` (a decode step: 1); return (slots, copies).

        slots:  the num_tokens slot numbers (block_id * block_size + offset) the new tokens go to, in order.
        copies: (src_block, dst_block) pairs the caller must copy in the KV cache *before* writing the
                new tokens: the copy-on-write of a shared, partly filled last block (empty if none).
        Raises ValueError for an unknown seq_id or num_tokens < 0; OutOfBlocksError, unchanged, if the
        free blocks do not suffice (check with can_append). A copy-on-write's private block takes the shared
        block's place in the table, and the shared block loses one reference.
        """
        if not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
        needed = self.blocks_needed_to_append(seq_id, num_tokens)
        # BEGIN SOLUTION
        if needed > self.num_free_blocks:
            raise OutOfBlocksError(f"sequence {seq_id!r} needs {needed} free blocks to append {num_tokens} "
                                   f"tokens; {self.num_free_blocks} are free")
        table, start = self.tables[seq_id], self.seq_lens[seq_id]
        copies = []
        if num_tokens > 0 and start % self.block_size and self.ref_counts[table[-1]] > 1:
            private = self._take_free_block()
            copies.append((table[-1], private))
            self._release(table[-1])
            table[-1] = private
        end = start + num_tokens
        while len(table) < self.num_blocks_for(end):
            table.append(self._take_free_block())
        self.seq_lens[seq_id] = end
        bs = self.block_size
        return [table[t // bs] * bs + t % bs for t in range(start, end)], copies
        # END SOLUTION

    def fork(self, parent_id: Hashable, child_id: Hashable) -> list[int]:
        """Start `child_id` as a copy of `parent_id` that shares all its blocks; return the child's table.

        Takes no free block (copies happen later, on write). Raises ValueError for an unknown parent or
        a known child.
        """
        self._known(parent_id)
        if child_id in self.tables:
            raise ValueError(f"sequence {child_id!r} already exists: fork into a new id")
        # BEGIN SOLUTION
        table = list(self.tables[parent_id])
        for block_id in table:
            self.ref_counts[block_id] += 1
        self.tables[child_id] = table
        self.seq_lens[child_id] = self.seq_lens[parent_id]
        return list(table)
        # END SOLUTION

    def free(self, seq_id: Hashable) -> list[int]:
        """Drop sequence `seq_id`; return the blocks that became free (in the order they joined the free
        list). Blocks still shared with other sequences stay held. The sequence's blocks are released from
        its last to its first, so that a prefix cache, evicting from the front of the free list, evicts a
        prefix's tail before its head. Raises ValueError for an unknown id.
        """
        self._known(seq_id)
        # BEGIN SOLUTION
        table = self.tables.pop(seq_id)
        del self.seq_lens[seq_id]
        return [b for b in reversed(table) if self._release(b)]
        # END SOLUTION
