"""inf30 · An iteration-level scheduler: who runs in the next forward, and with how many tokens.

Static batching (inf12) picks a batch and runs it until its longest member is done. Continuous batching
(Orca, OSDI'22) decides again at every step: requests that finished leave at once, waiting ones join as
soon as there is room, and one forward carries prompt tokens of new requests beside the decode tokens of
running ones. The scheduler works on ids and counts only (no tensors), so it is tested without a model:
each step it hands a plain-data `StepPlan` to a model runner and gets the sampled tokens back.

The unified view (vLLM v1): a request has `num_tokens` known tokens (prompt + generated so far) of
which `num_computed` are in the KV cache; a step gives it some of the remaining ones. A new request's
remaining tokens are its prompt (a prefill, possibly cut into chunks by the token budget); a running
request's is the one token it sampled last (a decode). Memory is counted through a `lab.kv_slots.
KVAllocator`; when it runs out, the most recently admitted request is preempted: its memory is freed and
it goes back to the front of the queue, to be recomputed (prompt + what it generated) when it returns.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.kv_slots import KVAllocator


@dataclass(frozen=True)
class Request:
    """A generation request: greedy tokens after `prompt_ids`, at most `max_new_tokens` of them (it stops
    earlier right after the EOS, which is kept). It arrives at scheduler step `arrival_step`."""

    request_id: int
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    arrival_step: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", tuple(int(t) for t in self.prompt_ids))
        if not self.prompt_ids:
            raise ValueError(f"request {self.request_id}: the prompt is empty; give at least one token")
        if self.max_new_tokens < 1 or self.arrival_step < 0:
            raise ValueError(f"request {self.request_id}: need max_new_tokens >= 1 and arrival_step >= 0, got "
                             f"{self.max_new_tokens} and {self.arrival_step}")


@dataclass(frozen=True)
class SchedulerConfig:
    """max_num_batched_tokens: the token budget of one forward (prefill + decode tokens together);
    max_num_seqs: the most requests running at once (admitted and not finished)."""

    max_num_batched_tokens: int = 256
    max_num_seqs: int = 16

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError(f"max_num_batched_tokens and max_num_seqs must be >= 1, got "
                             f"{self.max_num_batched_tokens} and {self.max_num_seqs}")


@dataclass(frozen=True)
class ScheduledChunk:
    """One request's share of a step: feed `token_ids` at positions start_position, start_position + 1, ...
    (`start_position` = tokens already in its KV cache). `is_sampling`: the chunk ends at the request's
    last known token, so the runner samples its next token from the chunk's last position."""

    request_id: int
    token_ids: tuple[int, ...]
    start_position: int
    is_sampling: bool


@dataclass(frozen=True)
class StepPlan:
    """What one forward runs (plain data, the scheduler's whole message to the model runner).

    chunks:        in packed order, each request at most once.
    preempted_ids: requests preempted while planning this step: drop their KV before running it.
    """

    chunks: tuple[ScheduledChunk, ...]
    preempted_ids: tuple[int, ...] = ()

    @property
    def num_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.chunks)


@dataclass
class RequestState:
    """The scheduler's mutable record of one request."""

    request: Request
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0                 # tokens whose K/V is in the cache

    @property
    def request_id(self) -> int:
        return self.request.request_id

    @property
    def all_ids(self) -> tuple[int, ...]:
        return self.request.prompt_ids + tuple(self.output_ids)


class Scheduler:
    """FCFS continuous batching under a token budget, a running cap and a KV allocator.

    Use: `add_request` as requests arrive; per step `plan = schedule()`, run it, `update(plan, sampled)`.
    `waiting` (a deque, FCFS, preempted requests back at its front) and `running` (admission order) hold
    `RequestState` records; `finished` maps request id -> its generated tokens.
    """

    def __init__(self, config: SchedulerConfig, allocator: KVAllocator, eos_token_id: int | None = None):
        self.config, self.allocator, self.eos_token_id = config, allocator, eos_token_id
        self.waiting: deque[RequestState] = deque()
        self.running: list[RequestState] = []
        self.finished: dict[int, list[int]] = {}
        self.num_preemptions = 0
        self._known: set[int] = set()

    def add_request(self, request: Request) -> None:
        """Queue a request (at the back). Raises ValueError for a duplicate id, or a request that could
        never fit in memory alone (prompt + max_new_tokens > the allocator's total slots)."""
        if request.request_id in self._known:
            raise ValueError(f"request id {request.request_id} was already added")
        need = len(request.prompt_ids) + request.max_new_tokens
        if need > self.allocator.num_total_slots:
            raise ValueError(f"request {request.request_id} needs {need} KV slots (prompt + max_new_tokens) but "
                             f"the allocator has only {self.allocator.num_total_slots}")
        self._known.add(request.request_id)
        self.waiting.append(RequestState(request))

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> StepPlan:
        """Plan the next step.

        1. Running requests first, in admission order: each gets min(its remaining tokens, the budget
           left) new tokens, once the allocator holds room for num_computed + those tokens. When it cannot,
           preempt the most recently admitted running request (free it, num_computed = 0, back to the
           front of `waiting`) and try again; if that victim is the request itself, stop there.
        2. Then, only if nobody was preempted this step: admit waiting requests from the front (FCFS:
           never skip one that does not fit) while budget is left, fewer than max_num_seqs run, and the
           allocator holds room for their first chunk.
        Returns a StepPlan: one chunk per scheduled request, running ones first then the admitted ones,
        each with the next num_new of its all_ids after its num_computed (start_position = num_computed);
        is_sampling when the chunk reaches the request's last known token; preempted_ids in the order
        preempted. Admitted requests move from `waiting` to the end of `running`; `num_computed` is not
        advanced here (update does that). Count every preemption in `self.num_preemptions`.
        The lesson's hints for schedule give the loop structure.
        """
        # BEGIN SOLUTION
        budget = self.config.max_num_batched_tokens
        scheduled: list[tuple[RequestState, int]] = []
        preempted: list[int] = []
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            num_new = min(len(seq.all_ids) - seq.num_computed, budget)
            while not self.allocator.allocate(seq.request_id, seq.num_computed + num_new):
                victim = self.running.pop()                       # the most recently admitted
                self._preempt(victim)
                preempted.append(victim.request_id)
                if victim is seq:
                    break
            else:
                scheduled.append((seq, num_new))
                budget -= num_new
                index += 1
                continue
            break                                                 # the request preempted itself
        while not preempted and self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            num_new = min(len(seq.all_ids), budget)
            if not self.allocator.allocate(seq.request_id, num_new):
                break                                             # FCFS: nobody jumps the queue
            self.waiting.popleft()
            self.running.append(seq)
            scheduled.append((seq, num_new))
            budget -= num_new
        return StepPlan(tuple(self._chunk(seq, n) for seq, n in scheduled), tuple(preempted))
        # END SOLUTION

    def update(self, plan: StepPlan, sampled: Mapping[int, int]) -> list[int]:
        """Record a step's results: every chunk's tokens are now computed; each sampling chunk's request
        gets its sampled token (`sampled[request_id]`). A request that just produced the EOS or its
        max_new_tokens-th token finishes at once: it leaves `running`, its memory is freed, its output goes
        to `finished`. Returns the ids finished by this step, in plan order.
        Raises ValueError if `sampled` lacks a sampling chunk's request or has others.
        """
        # BEGIN SOLUTION
        wanted = {c.request_id for c in plan.chunks if c.is_sampling}
        if set(sampled) != wanted:
            raise ValueError(f"sampled tokens must cover exactly the sampling chunks {sorted(wanted)}, got "
                             f"{sorted(sampled)}")
        by_id = {seq.request_id: seq for seq in self.running}
        done = []
        for chunk in plan.chunks:
            seq = by_id[chunk.request_id]
            seq.num_computed += len(chunk.token_ids)
            if not chunk.is_sampling:
                continue
            token = int(sampled[chunk.request_id])
            seq.output_ids.append(token)
            if token == self.eos_token_id or len(seq.output_ids) >= seq.request.max_new_tokens:
                self.running.remove(seq)
                self.allocator.free(seq.request_id)
                self.finished[seq.request_id] = list(seq.output_ids)
                done.append(seq.request_id)
        return done
        # END SOLUTION

    # BEGIN SOLUTION
    def _preempt(self, seq: RequestState) -> None:
        """Recompute preemption: forget its cache, keep its tokens, put it first in line."""
        self.allocator.free(seq.request_id)
        seq.num_computed = 0
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    @staticmethod
    def _chunk(seq: RequestState, num_new: int) -> ScheduledChunk:
        start = seq.num_computed
        ids = seq.all_ids
        return ScheduledChunk(seq.request_id, ids[start:start + num_new], start, start + num_new == len(ids))
    # END SOLUTION
