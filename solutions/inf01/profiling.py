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

# BEGIN SOLUTION
from torch.profiler import ProfilerActivity, profile, record_function

from lab.cache import DynamicCache
# END SOLUTION

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
    # BEGIN SOLUTION
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    device_type = device_type or default_device().type
    for _ in range(warmup):
        fn()
    synchronize(device_type)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with profile(activities=activities, with_flops=True, record_shapes=True) as prof:
        fn()
        synchronize(device_type)
    if trace_path is not None:
        trace_path = Path(trace_path)
        prof.export_chrome_trace(str(trace_path))
    rows = prof.key_averages()
    ops = sorted(_op_stats(rows, device_type), key=lambda op: op.time_s, reverse=True)
    return ProfileResult(ops=ops[:top_k] if top_k else ops, phase_s=_phase_seconds(rows),
                         trace_path=trace_path, device_type=device_type)
    # END SOLUTION


# BEGIN SOLUTION
def _op_stats(rows, device_type: str) -> list[OpStat]:
    stats = []
    for row in rows:
        if getattr(row, "is_user_annotation", False) or row.device_type != torch.autograd.DeviceType.CPU:
            continue
        micros = row.self_device_time_total if device_type == "cuda" else row.self_cpu_time_total
        stats.append(OpStat(row.key, row.count, micros / 1e6, int(row.flops or 0)))
    return stats


def _phase_seconds(rows) -> dict[str, float]:
    return {row.key: row.cpu_time_total / 1e6 for row in rows
            if getattr(row, "is_user_annotation", False) and row.device_type == torch.autograd.DeviceType.CPU}
# END SOLUTION


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
    # BEGIN SOLUTION
    param = next(model.parameters())
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=param.device)
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D sequence of token ids, got shape {list(ids.shape)}")
    ids = ids[None]

    def prefill_then_decode() -> None:
        cache = DynamicCache(model.config, 1, ids.shape[1] + 1, dtype=param.dtype, device=param.device)
        with record_function("prefill"):
            next_id = model(ids, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)   # [1, 1]
            synchronize(param.device)
        with record_function("decode"):
            model(next_id, cache=cache, last_only=True)[:, -1].argmax(-1)
            synchronize(param.device)

    return profile_ops(prefill_then_decode, device_type=param.device.type, top_k=top_k, trace_path=trace_path)
    # END SOLUTION
