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
from lab.errors import NotStarted

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
    raise NotStarted("inf30: implement continuous_generate")
