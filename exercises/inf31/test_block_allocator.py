"""inf31 tests: the block allocator, under random workloads and on the cases that matter.

Oracles: a shadow model the test keeps itself, independent of the allocator: every sequence's token
contents (written into a fake pool through the slots the allocator hands out, copies applied as it asks),
the reference counts recounted from the block tables, the free blocks needed by each request computed
from first principles. Random workloads come from hypothesis (a rule-based state machine: allocate,
allocate on a shared prefix, append, fork, free), seeded by the lab's seed so a failure replays with
`--seed`; hypothesis shrinks a failing workload to a short program and prints it.
"""
from __future__ import annotations

import hypothesis
import pytest
import torch
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lab.impl import Topic
from lab.testing import pick

impl = Topic("inf31")

HYPOTHESIS_EXAMPLES = 60        # workloads per run; each runs up to 40 steps (about 3 s on the 2-core CPU)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def snapshot(alloc) -> tuple:
    """Everything observable about the allocator's state, to prove a refused request changed nothing."""
    return (list(alloc.ref_counts), list(alloc.free_blocks), {s: list(t) for s, t in alloc.tables.items()},
            dict(alloc.seq_lens))


def check_invariants(alloc, contents: dict, pool: dict) -> None:
    """The allocator's invariants, against the test's own model.

    contents: {seq_id: list of token labels the sequence holds}; pool: {slot: label} written so far.
    """
    bs, n = alloc.block_size, alloc.num_blocks
    assert set(alloc.tables) == set(contents), \
        f"the allocator holds sequences {sorted(alloc.tables)}, the workload {sorted(contents)}"
    counts = [0] * n
    for seq_id, tokens in contents.items():
        table = alloc.block_table(seq_id)
        assert alloc.seq_lens[seq_id] == len(tokens), \
            f"sequence {seq_id}: seq_lens says {alloc.seq_lens[seq_id]} tokens, the workload gave it {len(tokens)}"
        assert len(table) == ceil_div(len(tokens), bs), (
            f"sequence {seq_id} of {len(tokens)} tokens holds {len(table)} blocks of {bs}; it must hold exactly "
            f"ceil(n / block_size) = {ceil_div(len(tokens), bs)} (waste below one block per sequence)")
        assert len(set(table)) == len(table), f"sequence {seq_id} names a block twice: {table}"
        for block_id in table:
            counts[block_id] += 1
        read_back = [pool.get(table[t // bs] * bs + t % bs) for t in range(len(tokens))]
        assert read_back == tokens, (
            f"sequence {seq_id} reads back {read_back} through its block table, but holds {tokens}: a block it "
            "still uses was handed to another sequence or written by one (shared without copy-on-write)")
    assert list(alloc.ref_counts) == counts, (
        f"ref counts {list(alloc.ref_counts)} differ from the number of block tables naming each block {counts}")
    free = list(alloc.free_blocks)
    assert len(set(free)) == len(free) and alloc.num_free_blocks == len(free), f"free list has repeats: {free}"
    want_free = {b for b in range(n) if counts[b] == 0}
    assert set(free) == want_free, (
        f"free blocks {sorted(free)} but the blocks no table names are {sorted(want_free)}: "
        f"{'leaked ' + str(sorted(want_free - set(free))) if want_free - set(free) else ''} "
        f"{'still in use ' + str(sorted(set(free) - want_free)) if set(free) - want_free else ''}")


class AllocatorWorkload(RuleBasedStateMachine):
    """A random workload of allocate / allocate-on-a-shared-prefix / append / fork / free against the student's
    allocator, with the shadow model above checked after every step."""

    def __init__(self):
        super().__init__()
        self.alloc = None
        self.contents: dict[int, list[int]] = {}
        self.pool: dict[int, int] = {}
        self.next_seq = self.next_label = 0

    @initialize(num_blocks=st.integers(1, 24), block_size=st.integers(1, 6))
    def start(self, num_blocks, block_size):
        self.alloc = impl.block_allocator.BlockAllocator(num_blocks, block_size)

    def labels(self, count: int) -> list[int]:
        self.next_label += count
        return list(range(self.next_label - count, self.next_label))

    def write(self, slots, labels, copies=()) -> None:
        bs = self.alloc.block_size
        for src, dst in copies:                         # the caller's copy-on-write, as the allocator asked
            for o in range(bs):
                if src * bs + o in self.pool:
                    self.pool[dst * bs + o] = self.pool[src * bs + o]
        assert len(slots) == len(labels), f"asked for {len(labels)} slots, got {len(slots)}"
        for slot, label in zip(slots, labels):
            self.pool[slot] = label

    def new_seq(self, tokens: list[int], shared: list[int]) -> None:
        seq_id, self.next_seq = self.next_seq, self.next_seq + 1
        bs, before = self.alloc.block_size, snapshot(self.alloc)
        need = ceil_div(len(tokens), bs) - len(shared) + sum(self.alloc.ref_counts[b] == 0 for b in shared)
        assert self.alloc.can_allocate(len(tokens), shared) == (need <= self.alloc.num_free_blocks), (
            f"a sequence of {len(tokens)} tokens on {len(shared)} shared blocks needs {need} free blocks, "
            f"{self.alloc.num_free_blocks} are free, but can_allocate says {not need <= self.alloc.num_free_blocks}")
        if need > self.alloc.num_free_blocks:
            with pytest.raises(impl.block_allocator.OutOfBlocksError):
                self.alloc.allocate(seq_id, len(tokens), shared_blocks=shared)
            assert snapshot(self.alloc) == before, "a refused allocate must leave the allocator unchanged"
            return
        table = self.alloc.allocate(seq_id, len(tokens), shared_blocks=shared)
        assert table[: len(shared)] == shared, f"the table {table} must start with the shared blocks {shared}"
        self.contents[seq_id] = tokens
        skip = len(shared) * bs                              # the shared blocks already hold these tokens
        self.write([table[t // bs] * bs + t % bs for t in range(skip, len(tokens))], tokens[skip:])

    @rule(num_tokens=st.integers(0, 13))
    def allocate(self, num_tokens):
        self.new_seq(self.labels(num_tokens), [])

    @precondition(lambda self: self.contents)
    @rule(data=st.data(), extra=st.integers(0, 9))
    def allocate_on_a_shared_prefix(self, data, extra):
        """A prefix cache's hit: a new sequence starts on another's full blocks (still held or not)."""
        donor = data.draw(st.sampled_from(sorted(self.contents)))
        bs, tokens = self.alloc.block_size, self.contents[donor]
        num_full = len(tokens) // bs
        k = data.draw(st.integers(0, num_full))
        self.new_seq(tokens[: k * bs] + self.labels(extra), self.alloc.block_table(donor)[:k])

    @precondition(lambda self: self.contents)
    @rule(data=st.data(), num_tokens=st.integers(0, 8))
    def append(self, data, num_tokens):
        seq_id = data.draw(st.sampled_from(sorted(self.contents)))
        bs, tokens = self.alloc.block_size, self.contents[seq_id]
        table = self.alloc.block_table(seq_id)
        is_cow = num_tokens > 0 and len(tokens) % bs != 0 and self.alloc.ref_counts[table[-1]] > 1
        need = ceil_div(len(tokens) + num_tokens, bs) - len(table) + is_cow
        assert self.alloc.blocks_needed_to_append(seq_id, num_tokens) == need, (
            f"appending {num_tokens} to a sequence of {len(tokens)} tokens in {len(table)} blocks of {bs} "
            f"({'shared' if is_cow else 'private'} last block) needs {need} free blocks, "
            f"blocks_needed_to_append says {self.alloc.blocks_needed_to_append(seq_id, num_tokens)}")
        assert self.alloc.can_append(seq_id, num_tokens) == (need <= self.alloc.num_free_blocks)
        before = snapshot(self.alloc)
        if need > self.alloc.num_free_blocks:
            with pytest.raises(impl.block_allocator.OutOfBlocksError):
                self.alloc.append_slots(seq_id, num_tokens)
            assert snapshot(self.alloc) == before, "a refused append_slots must leave the allocator unchanged"
            return
        labels = self.labels(num_tokens)
        slots, copies = self.alloc.append_slots(seq_id, num_tokens)
        assert len(copies) == is_cow, (f"expected {int(is_cow)} copy-on-write copies appending into a "
                                       f"{'shared' if is_cow else 'private'} partial last block, got {copies}")
        self.write(slots, labels, copies)
        tokens.extend(labels)

    @precondition(lambda self: self.contents)
    @rule(data=st.data())
    def fork(self, data):
        parent = data.draw(st.sampled_from(sorted(self.contents)))
        child, self.next_seq = self.next_seq, self.next_seq + 1
        free_before = self.alloc.num_free_blocks
        table = self.alloc.fork(parent, child)
        assert table == self.alloc.block_table(parent), "a forked child must share its parent's blocks"
        assert self.alloc.num_free_blocks == free_before, "fork must not take blocks (copies happen on write)"
        self.contents[child] = list(self.contents[parent])

    @precondition(lambda self: self.contents)
    @rule(data=st.data())
    def free(self, data):
        seq_id = data.draw(st.sampled_from(sorted(self.contents)))
        table = self.alloc.block_table(seq_id)
        freed = self.alloc.free(seq_id)
        del self.contents[seq_id]
        still_held = {b for s in self.contents for b in self.alloc.block_table(s)}
        assert sorted(freed) == sorted(set(table) - still_held), (
            f"free returned {sorted(freed)}; the blocks no other sequence holds are {sorted(set(table) - still_held)}")

    @invariant()
    def holds_invariants(self):
        if self.alloc is not None:
            check_invariants(self.alloc, self.contents, self.pool)


def test_allocator_keeps_its_invariants_under_random_workloads(seed):
    """No block leaked or shared wrongly, ref counts = tables naming the block, waste < one block per
    sequence, refusals exact and side-effect free: over random allocate/append/fork/free workloads."""
    settings = hypothesis.settings(max_examples=HYPOTHESIS_EXAMPLES, stateful_step_count=40, deadline=None,
                                   database=None, derandomize=False, print_blob=False,
                                   suppress_health_check=list(hypothesis.HealthCheck))
    run = hypothesis.stateful.get_state_machine_test(AllocatorWorkload, settings=settings)
    hypothesis.seed(seed)(run)()


def test_out_of_blocks_is_signalled_and_changes_nothing(rng):
    bs = pick(rng, 2, 7)
    num_blocks = pick(rng, 3, 9)
    alloc = impl.block_allocator.BlockAllocator(num_blocks, bs)
    alloc.allocate(0, (num_blocks - 1) * bs)                       # one block left
    assert alloc.can_allocate(bs) and not alloc.can_allocate(bs + 1), \
        f"with 1 free block of {bs}, can_allocate({bs}) must be True and can_allocate({bs + 1}) False"
    before = snapshot(alloc)
    with pytest.raises(impl.block_allocator.OutOfBlocksError):
        alloc.allocate(1, bs + 1)
    assert snapshot(alloc) == before, "a refused allocate must not take blocks or register the sequence"
    assert issubclass(impl.block_allocator.OutOfBlocksError, MemoryError)
    alloc.append_slots(0, bs)                                        # takes the last block
    assert alloc.num_free_blocks == 0 and not alloc.can_append(0, 1)
    with pytest.raises(impl.block_allocator.OutOfBlocksError):
        alloc.append_slots(0, 1)
    assert alloc.free(0) and alloc.num_free_blocks == num_blocks, "free must return every block of a sole owner"


def test_fork_shares_blocks_and_copies_the_last_one_on_write(rng):
    bs = pick(rng, 3, 8)
    n = pick(rng, 2, 4) * bs + pick(rng, 1, bs - 1)                  # a partly filled last block
    alloc = impl.block_allocator.BlockAllocator(16, bs)
    parent = alloc.allocate("parent", n)
    child = alloc.fork("parent", "child")
    assert child == parent and all(alloc.ref_counts[b] == 2 for b in parent), \
        f"after fork every block of the parent must have ref count 2, got {[alloc.ref_counts[b] for b in parent]}"
    free_before = alloc.num_free_blocks
    slots, copies = alloc.append_slots("child", 1)
    new_table = alloc.block_table("child")
    assert copies == [(parent[-1], new_table[-1])] and new_table[:-1] == parent[:-1] and new_table[-1] != parent[-1], (
        f"writing into the shared partial block {parent[-1]} must copy it to a fresh block first: expected "
        f"copies [({parent[-1]}, new)] and the child's table {parent[:-1]} + [new], got {copies} and {new_table}")
    assert slots == [new_table[-1] * bs + n % bs], \
        f"the new token goes to offset {n % bs} of the copy, got slot {slots}"
    assert alloc.num_free_blocks == free_before - 1 and alloc.ref_counts[parent[-1]] == 1
    slots, copies = alloc.append_slots("parent", 1)                  # the parent owns its last block again
    assert copies == [] and slots == [parent[-1] * bs + n % bs], \
        f"the parent's last block is private again: expected no copy and slot {parent[-1] * bs + n % bs}"


def test_paging_fits_twice_the_sequences_of_max_length_preallocation(rng):
    """The memory a preallocated cache (inf10) reserves for N sequences of max_len tokens holds >= 2N
    sequences of a realistic length mix when paged (vLLM: 60-80% of reserved KV memory went unused)."""
    max_len, bs, num_prealloc = 2048, 16, pick(rng, 8, 24)
    pool_tokens = num_prealloc * max_len
    alloc = impl.block_allocator.BlockAllocator(pool_tokens // bs, bs)
    # prompt + output lengths of a chat workload: long-tailed, mean ~ max_len / 5
    lengths = (torch.distributions.LogNormal(5.8, 0.8).sample((20 * num_prealloc,)).long() + 1).clamp(max=max_len)
    admitted = 0
    for seq_id, n in enumerate(lengths.tolist()):
        if not alloc.can_allocate(n):
            break
        alloc.allocate(seq_id, n)
        admitted += 1
    used = sum(alloc.seq_lens.values())
    held = (alloc.num_blocks - alloc.num_free_blocks) * bs
    assert admitted >= 2 * num_prealloc, (f"the memory of {num_prealloc} preallocated sequences of {max_len} "
                                          f"tokens held only {admitted} paged sequences (need >= {2 * num_prealloc})")
    assert held - used < admitted * bs, f"{held - used} slots wasted by {admitted} sequences: over one block each"


def test_allocator_rejects_bad_requests():
    alloc = impl.block_allocator.BlockAllocator(4, 4)
    alloc.allocate(7, 5)
    for bad in (lambda: impl.block_allocator.BlockAllocator(0, 4), lambda: impl.block_allocator.BlockAllocator(4, 0),
                lambda: alloc.allocate(7, 1), lambda: alloc.allocate(8, -1), lambda: alloc.append_slots(9, 1),
                lambda: alloc.append_slots(7, -2), lambda: alloc.fork(9, 10), lambda: alloc.fork(7, 7),
                lambda: alloc.free(9), lambda: alloc.allocate(8, 4, shared_blocks=[99])):
        with pytest.raises(ValueError):
            bad()
