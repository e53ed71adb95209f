"""inf31 hidden tests: one-token blocks and an exactly full pool, fork chains freed in any order, a prefix
cache's free block revived, fp16 and long-block paged attention, the Triton kernel on head_dim 32 with
groups of 4 and a single sequence."""
import pytest
import torch

from exercises.inf31.test_block_allocator import check_invariants, snapshot
from exercises.inf31.test_paged_attention import contiguous_oracle, random_paged_batch
from lab.impl import Topic
from lab.testing import count_triton_launches, pick
from lab.triton_interpreter import run_in_interpreter

impl = Topic("inf31")


def test_hidden_one_token_blocks_fill_the_pool_exactly(rng):
    """block_size 1: every token is a block; the pool fills to the last block, then refuses one more token."""
    num_blocks = pick(rng, 5, 17)
    alloc = impl.block_allocator.BlockAllocator(num_blocks, 1)
    first = pick(rng, 1, num_blocks - 2)
    table = alloc.allocate("a", first)
    assert len(table) == first, f"{first} tokens in blocks of 1 need {first} blocks, got {table}"
    slots, copies = alloc.append_slots("a", num_blocks - first)
    assert slots == alloc.block_table("a")[first:] and copies == [], \
        f"with one-token blocks a token's slot is its block id: expected {alloc.block_table('a')[first:]}, got {slots}"
    assert alloc.num_free_blocks == 0 and alloc.append_slots("a", 0) == ([], [])
    before = snapshot(alloc)
    with pytest.raises(impl.block_allocator.OutOfBlocksError):
        alloc.append_slots("a", 1)
    assert snapshot(alloc) == before


def test_hidden_fork_chains_freed_in_any_order_leave_an_empty_pool(rng):
    """A fork of a fork of a fork, each appending a few tokens (copy-on-write at every level), freed in a
    random order: the counts stay exact throughout and every block comes back."""
    bs = pick(rng, 2, 5)
    alloc = impl.block_allocator.BlockAllocator(64, bs)
    contents, pool, label = {}, {}, [0]

    def append(seq_id, n):
        slots, copies = alloc.append_slots(seq_id, n)
        for src, dst in copies:
            for o in range(bs):
                if src * bs + o in pool:
                    pool[dst * bs + o] = pool[src * bs + o]
        for s in slots:
            pool[s] = label[0]
            contents[seq_id].append(label[0])
            label[0] += 1

    n = pick(rng, 1, 3 * bs) | 1
    alloc.allocate(0, 0)
    contents[0] = []
    append(0, n)
    for child in range(1, 5):
        alloc.fork(child - 1, child)
        contents[child] = list(contents[child - 1])
        append(child, pick(rng, 1, bs + 1))
        append(child - 1, 1)
        check_invariants(alloc, contents, pool)
    for seq_id in torch.randperm(5, generator=rng).tolist():
        alloc.free(seq_id)
        del contents[seq_id]
        check_invariants(alloc, contents, pool)
    assert alloc.num_free_blocks == 64, f"{64 - alloc.num_free_blocks} blocks leaked after freeing every sequence"


def test_hidden_a_free_cached_block_is_revived_by_a_shared_prefix(rng):
    """A prefix cache keeps a freed sequence's full blocks by hash; a new sequence sharing them takes them off
    the free list (they cost a free block each) instead of getting fresh ones."""
    bs = pick(rng, 2, 6)
    alloc = impl.block_allocator.BlockAllocator(8, bs)
    table = alloc.allocate("old", 3 * bs)
    freed = alloc.free("old")
    assert sorted(freed) == sorted(table) and alloc.num_free_blocks == 8
    assert alloc.can_allocate(3 * bs + 1, table[:2])
    new = alloc.allocate("new", 3 * bs + 1, shared_blocks=table[:2])
    assert new[:2] == table[:2] and len(new) == 4, f"expected {table[:2]} + 2 fresh blocks, got {new}"
    assert all(b not in alloc.free_blocks for b in new) and alloc.num_free_blocks == 4, \
        f"4 blocks are in use (2 revived, 2 fresh), so 4 must be free, not {alloc.num_free_blocks}"
    assert [alloc.ref_counts[b] for b in new] == [1, 1, 1, 1]
    assert not alloc.can_allocate(4 * bs + 1) and alloc.can_allocate(4 * bs)


@pytest.mark.parametrize("block_size", [1, 32])
def test_hidden_paged_attention_fp16_and_extreme_block_sizes(rng, block_size):
    q, k_cache, v_cache, tables, lens, keys, values = random_paged_batch(
        rng, num_seqs=pick(rng, 2, 5), max_context=pick(rng, 70, 200), num_kv_heads=2, group=4,
        head_dim=2 * pick(rng, 4, 16), block_size=block_size, dtype=torch.float16)
    got = impl.paged_attention.paged_attention(q, k_cache, v_cache, tables, lens)
    want = contiguous_oracle(q, keys, values)
    err = (got.double() - want).abs().max().item()
    assert got.dtype == torch.float16 and err <= 5e-3, \
        f"fp16, block_size {block_size}: max error {err:.2e} against contiguous attention in float64"


def check_hidden_kernel(seed: int) -> None:
    """One sequence, head_dim 32, 4 query heads per KV head, a context spanning several partitions."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    q, k_cache, v_cache, tables, lens, keys, values = random_paged_batch(
        gen, num_seqs=1, max_context=pick(gen, 65, 100), num_kv_heads=1, group=4, head_dim=32, block_size=4,
        dtype=dtype, device=device)
    with count_triton_launches() as launches:
        got = impl.paged_attention.paged_attention_triton(q, k_cache, v_cache, tables, lens)
    assert launches.count >= 1, "paged_attention_triton launched no Triton kernel"
    err = (got.cpu().double() - contiguous_oracle(q.cpu(), keys, values)).abs().max().item()
    assert err <= (1e-5 if dtype == torch.float32 else 3e-2), f"max error {err:.2e} on one sequence, head_dim 32"


def test_hidden_paged_triton_kernel_one_sequence_head_dim_32(seed):
    if torch.cuda.is_available():
        check_hidden_kernel(seed)
    else:
        run_in_interpreter(__file__, "check_hidden_kernel", seed)
