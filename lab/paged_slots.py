"""inf31's block allocator as a continuous-batching scheduler (inf30) sees KV memory: token slots.

The scheduler asks one question per request and step, "can request r hold n tokens in total now?", and
frees a request when it finishes or is preempted (the `KVAllocator` interface of inf30: `num_total_slots`,
`num_free_slots`, `allocate(request_id, num_tokens) -> bool`, `free(request_id)`). `PagedSlots` answers it
with a `BlockAllocator` (the student's, from Topic("inf31"), or the reference): a request's first
allocate starts its block table, later ones append slots, and the slots and copy-on-write copies each
call produced wait in `pending` for the model runner that writes the K/V.

    slots = PagedSlots(Topic("inf31").block_allocator.BlockAllocator(num_blocks, block_size=16))
    scheduler = Scheduler(config, slots)            # inf30
    ...; new_slots, copies = slots.pending.pop(request_id)

Slots are counted in whole blocks: a request of n tokens holds ceil(n / block_size) * block_size of them.
"""
from __future__ import annotations


class PagedSlots:
    """The token-slot view (inf30's KVAllocator) of a paged BlockAllocator (inf31)."""

    def __init__(self, allocator):
        self.allocator = allocator
        self.pending: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    @property
    def num_total_slots(self) -> int:
        return self.allocator.num_blocks * self.allocator.block_size

    @property
    def num_free_slots(self) -> int:
        return self.allocator.num_free_blocks * self.allocator.block_size

    def allocate(self, request_id: int, num_tokens: int) -> bool:
        """Make the request hold room for num_tokens tokens in total; False, changing nothing, if short."""
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        alloc = self.allocator
        if request_id not in alloc.tables:
            if not alloc.can_allocate(num_tokens):
                return False
            table = alloc.allocate(request_id, num_tokens)
            bs = alloc.block_size
            self.pending[request_id] = ([table[t // bs] * bs + t % bs for t in range(num_tokens)], [])
            return True
        extra = num_tokens - alloc.seq_lens[request_id]
        if extra <= 0:
            return True
        if not alloc.can_append(request_id, extra):
            return False
        slots, copies = alloc.append_slots(request_id, extra)
        old_slots, old_copies = self.pending.get(request_id, ([], []))
        self.pending[request_id] = (old_slots + slots, old_copies + copies)
        return True

    def free(self, request_id: int) -> None:
        """Give back the request's blocks (those it shares stay with their other holders); no-op if none."""
        self.pending.pop(request_id, None)
        if request_id in self.allocator.tables:
            self.allocator.free(request_id)
