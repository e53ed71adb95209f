"""inf33 · Block hashes as a chain: a block's key names its tokens *and everything before them*.

The KV of a token depends on every token before it, so two requests may share a block only if their
whole prefixes up to that block's end are equal. Hashing each full block together with its parent's hash
gives that key in O(block_size) per block: equal keys mean (up to hash collisions) equal prefixes, and
the longest cached prefix is found by walking the chain until the first miss (vLLM's automatic prefix
caching; SGLang's radix tree finds the same with a tree walk).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HashFn = Callable[[int | None, tuple[int, ...]], int]


def default_hash(parent_hash: int | None, token_ids: tuple[int, ...]) -> int:
    """A 64-bit key from SHA-256 of (parent, tokens): the same in every process (unlike Python's `hash`)."""
    data = repr((parent_hash, token_ids)).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def block_hashes(token_ids: Sequence[int], block_size: int, hash_fn: HashFn = default_hash) -> list[int]:
    """The chained keys of the *full* blocks of `token_ids` (a partial last block has none).

    key[0] = hash_fn(None, tokens[0:block_size]); key[i] = hash_fn(key[i - 1], tokens of block i), each
    block's tokens as a tuple of ints. Returns len(token_ids) // block_size keys.
    Raises ValueError if block_size < 1.
    """
    # BEGIN SOLUTION
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    keys, parent = [], None
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash_fn(parent, tuple(int(t) for t in token_ids[start:start + block_size]))
        keys.append(parent)
    return keys
    # END SOLUTION
