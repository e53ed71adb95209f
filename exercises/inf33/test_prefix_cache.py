"""inf33 prefix cache tests, without a model: chained keys, longest match, sharing, LRU eviction, and above all
no block handed out for a prefix it does not hold, under eviction and under hash collisions forced by a hook."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import pick

impl = Topic("inf33")


def test_block_hashes_chain_each_block_to_its_parent(rng):
    for _ in range(10):
        block_size = pick(rng, 1, 7)
        tokens = torch.randint(50, (pick(rng, 0, 40),), generator=rng).tolist()
        calls = []

        def spy(parent, block):
            calls.append((parent, block))
            return 1000 + len(calls)

        keys = impl.block_hash.block_hashes(tokens, block_size, spy)
        full = len(tokens) // block_size
        want_calls = [(None if i == 0 else 1000 + i, tuple(tokens[i * block_size:(i + 1) * block_size]))
                      for i in range(full)]
        assert calls == want_calls, (f"{len(tokens)} tokens, block_size {block_size}: expected hash_fn calls "
                                     f"(parent key, block tokens as a tuple) {want_calls[:3]}..., got {calls[:3]}...")
        assert keys == [1001 + i for i in range(full)], f"expected one key per full block ({full}), got {keys}"
    a = impl.block_hash.block_hashes([1, 2, 3, 4], 2)
    b = impl.block_hash.block_hashes([9, 9, 3, 4], 2)
    assert a[1] != b[1], "the same block after different prefixes must get different keys (the chain)"
    assert a == impl.block_hash.block_hashes([1, 2, 3, 4, 5], 2), "equal prefixes give equal keys; a partial block none"
    with pytest.raises(ValueError):
        impl.block_hash.block_hashes([1, 2], 0)


def check_state(cache):
    """Every block is exactly one of: free, cached (ref 0, registered, in the LRU), in use (ref > 0)."""
    free, lru = set(cache.free_ids), set(cache.lru)
    used = {b for b in range(cache.num_blocks) if cache.ref_count[b] > 0}
    assert len(free) == len(cache.free_ids) and not free & lru and not free & used and not lru & used, \
        f"a block is in two states: free {sorted(free)}, LRU {sorted(lru)}, in use {sorted(used)}"
    assert free | lru | used == set(range(cache.num_blocks)), \
        f"blocks leaked (in no state): {sorted(set(range(cache.num_blocks)) - free - lru - used)}"
    assert all(cache.ref_count[b] >= 0 for b in range(cache.num_blocks)), f"negative ref_count: {cache.ref_count}"


class Workload:
    """Requests through the cache as an engine would, with the test's own record of what each block holds: the
    whole prefix (all tokens up to the block's end) that was written into it."""

    def __init__(self, cache):
        self.cache, self.holds = cache, {}

    def run(self, seq, keep=False, head_first=False):
        cache, bs = self.cache, self.cache.block_size
        matched = cache.acquire_prefix(seq)
        for i, block_id in enumerate(matched):
            want = tuple(seq[:(i + 1) * bs])
            assert self.holds.get(block_id) == want, (
                f"block {block_id} was returned for the prefix ending at token {(i + 1) * bs} ({want[-bs:]} after "
                f"{len(want) - bs} tokens) but it holds {self.holds.get(block_id)!r:.80}: a block may be shared only "
                f"if its whole prefix is equal (an evicted, overwritten or colliding block must miss)")
        need = -(-len(seq) // bs) - len(matched)
        fresh = cache.allocate(need)
        if fresh is None:
            cache.release(matched[::-1])
            check_state(cache)
            return None
        assert len(fresh) == need and not set(fresh) & set(matched), f"allocate({need}) gave {fresh}"
        table = matched + fresh
        for i in range(len(matched), len(table)):
            self.holds[table[i]] = tuple(seq[:(i + 1) * bs])           # what the engine computes into it
        cache.commit(table, seq)
        check_state(cache)
        if not keep:
            cache.release(table if head_first else table[::-1])
            check_state(cache)
        return table


def adversarial_sequences(rng, num, block_size):
    """Few distinct tokens and shared stems: many equal blocks after different prefixes."""
    stems = [torch.randint(3, (pick(rng, 0, 4 * block_size),), generator=rng).tolist() for _ in range(3)]
    return [stems[pick(rng, 0, 2)] + torch.randint(3, (pick(rng, 1, 3 * block_size),), generator=rng).tolist()
            for _ in range(num)]


@pytest.mark.parametrize("hashing", ["sha256", "colliding"])
def test_no_block_is_shared_for_a_prefix_it_does_not_hold(rng, hashing):
    """Random requests over a small pool (constant eviction), with the real hash or a test hook that makes
    most keys collide (`hash_fn=lambda parent, block: sum(block) % 3`)."""
    for _ in range(8):
        block_size = pick(rng, 1, 5)
        kwargs = {} if hashing == "sha256" else {"hash_fn": lambda parent, block: sum(block) % 3}
        cache = impl.prefix_cache.PrefixCache(pick(rng, 4, 12), block_size, **kwargs)
        work = Workload(cache)
        for seq in adversarial_sequences(rng, 60, block_size):
            work.run(seq)
        assert cache.num_available == cache.num_blocks, "every request released, yet some blocks are still in use"


def test_a_block_whose_parent_was_evicted_is_never_matched(rng):
    """Blocks released head first (allowed), keys that ignore a block's first token (a collision hook): the
    parent X is evicted and its key reused by Y; X's child must not then be matched after Y."""
    bs = pick(rng, 2, 4)
    collide = lambda parent, block: impl.block_hash.default_hash(parent, block[1:])      # noqa: E731
    cache = impl.prefix_cache.PrefixCache(3, bs, hash_fn=collide)
    work = Workload(cache)
    x, y, z = [1] + [5] * (bs - 1), [2] + [5] * (bs - 1), [3] * bs
    work.run(x + z + [9], head_first=True)         # registers X and X>Z; LRU: X, X>Z
    work.run(y + [7], head_first=True)             # evicts X, registers Y under X's key
    work.run(y + z + [8])                          # Y matches; X>Z must not (checked inside run)
    for seq in adversarial_sequences(rng, 40, bs):
        work.run(seq, head_first=bool(pick(rng, 0, 1)))


def test_cache_finds_the_longest_cached_prefix_and_counts_hits(rng):
    """A pool that never evicts: the match is the longest full-block prefix shared with any earlier request."""
    block_size = pick(rng, 2, 5)
    cache = impl.prefix_cache.PrefixCache(4000, block_size)
    work, seen = Workload(cache), []
    queried = hit = 0
    p, q, w, y = ([10 + 4 * i + j] * block_size for i, j in enumerate(torch.randperm(4, generator=rng).tolist()))
    # Equal blocks after different parents: keyed alone, the second y would take the first's place (or be
    # found after the wrong parent): one of the last two requests would miss a prefix it shares with an earlier one.
    crafted = [p + y, q + w, q + y, q + y + w, p + y + w]
    for seq in crafted + adversarial_sequences(rng, 40, block_size):
        best = 0
        for old in seen:
            common = next((i for i, (a, b) in enumerate(zip(seq, old)) if a != b), min(len(seq), len(old)))
            best = max(best, common // block_size)
        before = cache.num_hit_tokens
        table = work.run(seq)
        got = (cache.num_hit_tokens - before) // block_size
        assert got == best, (f"a {len(seq)}-token request shares {best} full blocks with an earlier one, the cache "
                             f"matched {got}")
        queried, hit = queried + len(seq), hit + best * block_size
        seen.append(seq)
        assert table is not None
    assert (cache.num_queried_tokens, cache.num_hit_tokens) == (queried, hit), \
        f"expected {queried} queried and {hit} hit tokens, got {cache.num_queried_tokens} and {cache.num_hit_tokens}"
    assert cache.hit_rate == pytest.approx(hit / queried)


def test_shared_blocks_are_counted_and_never_evicted_while_in_use(rng):
    bs = pick(rng, 2, 4)
    cache = impl.prefix_cache.PrefixCache(6, bs)
    work = Workload(cache)
    stem = list(range(2 * bs))
    first = work.run(stem + [7] * bs, keep=True)                      # 3 blocks in use
    second = work.run(stem + [8] * bs, keep=True)                     # shares the first two
    assert second[:2] == first[:2] and [cache.ref_count[b] for b in first[:2]] == [2, 2], (
        f"two requests with the same {2 * bs}-token stem must share its 2 blocks with ref_count 2: tables {first}, "
        f"{second}, ref counts {[cache.ref_count[b] for b in first]}")
    assert cache.allocate(3) is None and cache.num_available == 2, \
        "4 of 6 blocks are in use: allocate(3) must return None (and take nothing)"
    assert cache.allocate(2) is not None


def test_lru_evicts_the_least_recently_released_block_first(rng):
    bs = pick(rng, 1, 3)
    cache = impl.prefix_cache.PrefixCache(4, bs)
    work = Workload(cache)
    a, b = [1] * bs + [2] * bs, [3] * bs + [4] * bs
    work.run(a)                                    # LRU: a1 a0
    work.run(b)                                    # LRU: a1 a0 b1 b0
    work.run(a)                                    # a is used again: LRU b1 b0 a1 a0
    taken = cache.allocate(1)                      # evicts b1, the least recently released
    cache.release(taken)
    hits = cache.num_hit_tokens
    matched = cache.acquire_prefix(a + [9])
    assert len(matched) == 2, f"a was released most recently: both its blocks must still be cached, matched {matched}"
    cache.release(matched[::-1])
    matched = cache.acquire_prefix(b + [9])
    assert len(matched) == 1, (f"allocating one block with none free must evict b's last block (released before "
                               f"a's blocks) and keep b's first: b matched {len(matched)} blocks, expected 1")
    assert cache.num_hit_tokens == hits + 3 * bs


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        impl.prefix_cache.PrefixCache(0, 4)
    cache = impl.prefix_cache.PrefixCache(3, 2)
    table = cache.allocate(2)
    cache.release(table)
    with pytest.raises(ValueError):
        cache.release(table[:1])                    # released twice
