"""inf01 · Profiling inference: which operators take the time, and how many FLOPs they do.

`torch.profiler` records every operator the model runs (`aten::mm`, `aten::add`, ...) with its time on
the host and, on a GPU, the time of the kernels it launched. Two traps:
- an operator's *total* time includes the operators it calls (`aten::linear` -> `aten::matmul` ->
  `aten::mm`); add totals up and the same microseconds count three times. Rank by *self* time.
- on a GPU the host only launches work: an `aten::mm` takes ~10 µs of host time and milliseconds of
  device time. Rank by the device time of the kernels an operator launched itself (its self device time);
  on a CPU the host time is the work.
The profiler also counts FLOPs for matmuls (`with_flops=True`), and writes a Chrome trace
(chrome://tracing or https://ui.perfetto.dev) where `record_function` labels show the phases.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lab.hardware import device as default_device, synchronize
from lab.errors import NotStarted


PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class OpStat:
    """One operator, aggregated over every call in a profiled run.

    name:   the operator as the profiler names it, e.g. "aten::mm".
    calls:  how many times it ran.
    time_s: its *self* time in seconds, summed over its calls: on a GPU the device time of the kernels it
            launched itself; on a CPU its own host time. Time inside operators it called is theirs.
    flops:  the FLOPs the profiler counted for it (matmuls, convolutions, some elementwise ops), else 0.
    """

    name: str
    calls: int
    time_s: float
    flops: int


@dataclass
class ProfileResult:
    """What one profiled run found.

    ops:         operators by time_s, largest first (at most `top_k` of them).
    phase_s:     seconds of each `record_function` region in the run, by label, e.g.
                 {"prefill": 0.41, "decode": 0.03}: the host's wall time from entering to leaving it.
    trace_path:  the Chrome trace written, or None.
    device_type: "cuda" or "cpu": which clock `time_s` is on.
    """

    ops: list[OpStat]
    phase_s: dict[str, float]
    trace_path: Path | None
    device_type: str

    def op(self, name: str) -> OpStat | None:
        """The entry of operator `name`, or None if it is not among `ops`."""
        return next((op for op in self.ops if op.name == name), None)


def profile_ops(fn: Callable[[], object], *, device_type: str | None = None, top_k: int | None = 10,
                trace_path: str | Path | None = None, warmup: int = 1) -> ProfileResult:
    """Run `fn()` `warmup` times unprofiled, then once under torch.profiler; return its top operators.

    device_type: "cuda" records CPU and CUDA activity and ranks by self device time; "cpu" records the
                 CPU only and ranks by self CPU time. Default: lab.hardware.device().type.
    top_k:       how many operators to keep (None: all); ValueError unless >= 1 or None.
    trace_path:  where to write the Chrome trace, or None for no trace (returned as a Path, or None).
    `ops` holds operator rows only, one per operator name: not the `record_function` labels (they give
    `phase_s` instead) and, on a GPU, not the kernel rows themselves, whose time is already the self
    device time of the operator that launched them. `flops` is what the profiler counts when asked to
    count FLOPs. The profiled region must hold all the device work that `fn` queued.
    Hints: README.md, "Hints" (where the profiler keeps one row per operator, and what to skip).
    """
    raise NotStarted("inf01: implement profile_ops")




@torch.inference_mode()
def profile_prefill_decode(model: torch.nn.Module, prompt_ids: list[int] | torch.Tensor, *,
                           top_k: int | None = 10, trace_path: str | Path | None = None) -> ProfileResult:
    """Profile one prefill of `prompt_ids` and one decode step after it, labelled "prefill" and "decode".

    model:      a `lab.model.LlamaModel` (it has `.config`), on any device, in any dtype.
    prompt_ids: 1-D token ids of one prompt.
    Each profiled run (the warm-up and the profiled one) starts from a fresh, empty
    `lab.cache.DynamicCache(model.config, 1, len(prompt) + 1, ...)` in the model's dtype and device: the
    prefill is `model(ids [1, P], cache=cache, last_only=True)` and picks the argmax token; the decode step
    feeds that token ([1, 1]) back with the same cache. `phase_s` has "prefill" and "decode", each label
    spanning its phase's device work. Returns `profile_ops(...)` of that run (one warm-up run first),
    ranked on the model's device type. Raises ValueError for an empty or non-1-D prompt.
    """
    raise NotStarted("inf01: implement profile_prefill_decode")
