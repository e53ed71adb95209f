"""inf30 · Continuous generation: requests arriving over time, served by the scheduler and the runner.

The loop of a serving engine, offline: at each step the requests that have arrived join the queue, the
scheduler plans, the runner runs the plan in one forward, the scheduler records the sampled tokens and
retires the finished requests at once. When nothing is running or waiting, the clock jumps to the next
arrival (no forward for an idle step).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lab.kv_slots import KVAllocator, SlotCounter

from .runner import ModelRunner
from .scheduler import Request, Scheduler, SchedulerConfig, StepPlan


@dataclass
class GenerationResult:
    """outputs: request id -> its greedy new tokens; num_forwards: model forwards run; num_preemptions;
    plans: every step's plan in order (plain data, for inspection); finish_step: request id -> the
    step (0-based, counting idle steps) whose forward produced its last token."""

    outputs: dict[int, list[int]]
    num_forwards: int
    num_preemptions: int
    plans: list[StepPlan] = field(default_factory=list)
    finish_step: dict[int, int] = field(default_factory=dict)


def continuous_generate(model: torch.nn.Module, requests: Sequence[Request], config: SchedulerConfig | None = None,
                        allocator: KVAllocator | None = None, eos_token_id: int | None = None) -> GenerationResult:
    """Serve `requests` (each arriving at its `arrival_step`) with continuous batching; greedy decoding.

    config:    the token budget and running cap (default SchedulerConfig()).
    allocator: the KV memory the scheduler may use (default: a `SlotCounter` big enough for every request
               at once, so nothing is preempted).
    Each step: add the requests whose arrival_step <= step (in arrival order, ties in list order), plan,
    run, update, release the finished requests' K/V; step += 1. If nothing is running or waiting, jump
    the step to the next arrival without a forward.
    Returns a GenerationResult whose outputs are exactly what each request generated alone would give.
    Raises ValueError for duplicate request ids (and whatever Request/Scheduler reject).
    """
    # BEGIN SOLUTION
    config = config or SchedulerConfig()
    if len({r.request_id for r in requests}) != len(requests):
        raise ValueError("request ids must be unique")
    if allocator is None:
        allocator = SlotCounter(max(1, sum(len(r.prompt_ids) + r.max_new_tokens for r in requests)))
    pending = sorted(requests, key=lambda r: r.arrival_step)         # stable: ties keep list order
    scheduler, runner = Scheduler(config, allocator, eos_token_id), ModelRunner(model)
    plans, finish_step, step, next_arrival = [], {}, 0, 0
    while next_arrival < len(pending) or scheduler.has_unfinished():
        while next_arrival < len(pending) and pending[next_arrival].arrival_step <= step:
            scheduler.add_request(pending[next_arrival])
            next_arrival += 1
        if not scheduler.has_unfinished():
            step = pending[next_arrival].arrival_step                # idle: jump to the next arrival
            continue
        plan = scheduler.schedule()
        finished = scheduler.update(plan, runner.step(plan))
        runner.release(finished)
        finish_step.update((request_id, step) for request_id in finished)
        plans.append(plan)
        step += 1
    return GenerationResult({r.request_id: scheduler.finished[r.request_id] for r in requests},
                            runner.num_forwards, scheduler.num_preemptions, plans, finish_step)
    # END SOLUTION
