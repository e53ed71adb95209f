"""KV memory as the scheduler sees it: an allocator of token slots, and the simplest one that works.

A continuous-batching scheduler (inf30) decides who runs by asking how much KV memory is left; it never
touches a tensor. It talks to memory through `KVAllocator`, counted in token slots (one slot holds one
token's K and V in every layer). `SlotCounter` is the reference: a counter of free slots. A paged
allocator (inf31) implements the same interface in fixed-size blocks (it holds ceil(n / block_size)
blocks for n tokens), and a prefix cache (inf33) sits on top of that; the scheduler does not change.

Invariants every implementation keeps:
- `num_free_slots + (slots held by all requests) == num_total_slots`, and never below zero;
- `allocate` is all-or-nothing: on False nothing changed;
- `free` returns everything the request held; freeing a request that holds nothing is a no-op.
"""
from __future__ import annotations

from typing import Protocol


class KVAllocator(Protocol):
    @property
    def num_total_slots(self) -> int: ...

    @property
    def num_free_slots(self) -> int: ...

    def allocate(self, request_id: int, num_tokens: int) -> bool:
        """Make request `request_id` hold room for `num_tokens` tokens in total (those already cached plus
        the ones this step writes). True if it does now; False, changing nothing, if memory is short."""
        ...

    def free(self, request_id: int) -> None:
        """Give back everything the request holds (it finished, or it is preempted)."""
        ...


class SlotCounter:
    """A `KVAllocator` that counts token slots: `num_total_slots` of them, no addresses, no blocks."""

    def __init__(self, num_total_slots: int):
        if num_total_slots < 1:
            raise ValueError(f"num_total_slots must be >= 1, got {num_total_slots}")
        self._total = num_total_slots
        self._held: dict[int, int] = {}

    @property
    def num_total_slots(self) -> int:
        return self._total

    @property
    def num_free_slots(self) -> int:
        return self._total - sum(self._held.values())

    def num_held(self, request_id: int) -> int:
        return self._held.get(request_id, 0)

    def allocate(self, request_id: int, num_tokens: int) -> bool:
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        extra = num_tokens - self.num_held(request_id)
        if extra > self.num_free_slots:
            return False
        if extra > 0:
            self._held[request_id] = num_tokens
        return True

    def free(self, request_id: int) -> None:
        self._held.pop(request_id, None)
