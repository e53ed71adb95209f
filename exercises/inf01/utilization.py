"""inf01 · Utilization: how close a measured time comes to the machine's ceilings.

Model FLOP utilization (MFU) = FLOPs done / seconds / peak FLOP/s; memory-bandwidth utilization (MBU) =
bytes that had to move / seconds / peak bytes/s. The counts come from arithmetic (inf00), the time from a
careful measurement, the peaks from measuring the machine (`lab.hardware.peaks()`), not its datasheet.
A batch-1 decode step of Llama-3-8B on an H200 moves 15.0 GB and does 16 GFLOP: at 45 tokens/s (eager
transformers) its MBU is 16% and its MFU 0.1%; gpt-fast's 184 tokens/s is 64% MBU. Prefill is the mirror
image: a 2,048-token prefill in 63 ms is 70% MFU.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from lab.hardware import Peaks, synchronize as device_synchronize
from lab.errors import NotStarted


@dataclass(frozen=True)
class Utilization:
    """A measured time against counted work and the machine's peaks.

    mfu: achieved FLOP/s divided by peaks.matmul_flops_per_s (0.62 means 62%).
    mbu: achieved bytes/s divided by peaks.copy_bytes_per_s.
    """

    seconds: float
    flops: float
    num_bytes: float
    mfu: float
    mbu: float

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds

    @property
    def bytes_per_s(self) -> float:
        return self.num_bytes / self.seconds

    @property
    def bound(self) -> str:
        """"memory" if bandwidth is the nearer ceiling (mbu >= mfu), else "compute"."""
        return "memory" if self.mbu >= self.mfu else "compute"


def utilization(flops: float, num_bytes: float, seconds: float, peaks: Peaks) -> Utilization:
    """MFU and MBU of work that did `flops` FLOPs and moved `num_bytes` bytes in `seconds`.

    Returns a Utilization holding the three inputs as given and mfu, mbu as its docstring defines them.
    Raises ValueError if seconds <= 0 or a count is negative (a clear message, not a ZeroDivisionError).
    """
    raise NotStarted("inf01: implement utilization")


def measure_seconds(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 10,
                    clock: Callable[[], float] = time.perf_counter,
                    synchronize: Callable[[], None] | None = None) -> float:
    """The median seconds of one call `fn()`, over `repeats` timed calls after `warmup` untimed ones.

    clock:       the clock to read (seconds); tests pass a fake one.
    synchronize: waits for queued device work; default `lab.hardware.synchronize()` (the GPU when there
                 is one). Call it right before *every* clock read: device work is asynchronous, and an
                 unsynchronized timer measures the launch, not the work.
    Warm-up calls absorb one-time costs (allocation, cuBLAS setup, compilation); the median ignores a
    call that a noisy neighbour slowed down. Each timed call is timed on its own (not the total divided
    by repeats). Raises ValueError if repeats < 1 or warmup < 0. Hints: README.md, "Hints".
    """
    raise NotStarted("inf01: implement measure_seconds")
