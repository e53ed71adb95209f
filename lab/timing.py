"""Speed thresholds as ratios measured in the same run: the student's code against a baseline.

    result = compare(candidate=fast_fn, baseline=naive_fn, make_inputs=lambda: (x,), threshold=5.0,
                     what="cached decode vs recompute", benchmark=benchmark, record=record_property)
    result.assert_passes()

Rules this module keeps, so that a speed test is fair and hard to fool:
- warm-up calls first (compilation, caches, allocator); device synchronized around every timed call,
  timed with the device's own events on a GPU (not with anything the timed module can patch); a call that
  returns with work still running on another CUDA stream (which the current stream's events do not see) is
  timed by the host's clock until every stream is done (`time_call`);
- paired rounds: each round times the baseline and the candidate back to back, in alternating order,
  so clock drift and a noisy neighbour hit both; the figure is the ratio of medians;
- fresh inputs for every timed call (`make_inputs`), and the timed outputs re-checked (`check`), so a
  result cached from a previous call or skipped work fails;
- a ratio within 5% under the threshold is measured once more with twice the rounds; both figures,
  the rounds and the threshold are reported on failure and recorded for the grader;
- the record also carries the tier (lab/thresholds.py: pass, or a bonus tier against the reference's
  calibrated ratio on this card, where one was recorded), which pytest's "speed" section (conftest.py)
  and the scorecard show on a pass as on a failure;
- the clocks are bound when this module is imported, before any student module is, so patching
  `time.perf_counter` or `torch.cuda.Event` later changes nothing (and the grader's seal,
  grading/guard/seal.py, fails the test that does);
  the rounds whose outputs are re-checked are drawn from the OS's randomness, so they cannot be predicted.

`LAB_SPEED_REPEAT=N` (set by `python -m grading.tools.calibrate --repeat N`) measures each comparison N times in
a row, for the flip check; the test asserts the first. Every measurement reaches the grader's records
through `record` (pytest's `record_property`): the first as `speed`, the repeats as `speed_repeat`.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from lab import thresholds

Inputs = tuple
RETRY_BAND = 0.05
HIDDEN_WORK_SLACK_S = 100e-6     # host clock over the events' time that means work on another stream (time_call)
NUM_RANDOM_CHECKS = 2            # timed outputs re-checked: the first round, the last, and this many others
_perf_counter, _median = time.perf_counter, statistics.median      # bound now: see the module docstring
_cuda_synchronize, _CudaEvent = torch.cuda.synchronize, torch.cuda.Event
_event_record = _CudaEvent.record
_event_elapsed = _CudaEvent.elapsed_time
_system_random = random.SystemRandom()


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        _cuda_synchronize()


def time_call(fn: Callable, args: Inputs, device_type: str) -> tuple[float, Any]:
    """Seconds of one call `fn(*args)` with the device synchronized before and after, and its output.

    On a GPU the figure is the time between two events on the current stream around the call, unless the host's
    clock, from before the first event until the whole device is idle again, exceeds it by more than
    HIDDEN_WORK_SLACK_S: then the call left work on another stream, where those events do not see it (or the
    host stalled just then: one round, which the median absorbs), and the host's time is the figure.
    """
    _sync(device_type)
    if device_type == "cuda":
        start, end = _CudaEvent(enable_timing=True), _CudaEvent(enable_timing=True)
        t0 = _perf_counter()
        _event_record(start)
        out = fn(*args)
        _event_record(end)
        _cuda_synchronize()                         # every stream of the device (the end event's among them)
        wall = _perf_counter() - t0
        seconds = _event_elapsed(start, end) / 1e3
        return (wall if wall - seconds > HIDDEN_WORK_SLACK_S else seconds), out
    t0 = _perf_counter()
    out = fn(*args)
    return _perf_counter() - t0, out


@dataclass
class Comparison:
    """The figures of one speed comparison. `ratio` = baseline time / candidate time (a speed-up)."""

    what: str
    candidate_s: float
    baseline_s: float
    threshold: float
    rounds: int
    retried: bool = False
    first_ratio: float | None = None          # the first measurement's ratio, when it was measured twice
    key: str | None = None                    # "infNN::test[params]", the test that measured it
    card: str | None = None                   # the GPU's name; None on a CPU
    reference_ratio: float | None = None      # the reference's calibrated ratio on this card, if recorded
    warmup_s: float = 0.0                     # host seconds of compare's warm-up calls (the first measurement's)
    measuring_s: float = 0.0                  # host seconds of this measurement's paired rounds, a retry's included

    @property
    def ratio(self) -> float:
        return self.baseline_s / self.candidate_s

    @property
    def passed(self) -> bool:
        return self.ratio >= self.threshold

    @property
    def tier(self) -> str:
        """below threshold, pass, or a bonus tier (lab.thresholds.tier); bonus tiers carry no points."""
        return thresholds.tier(self.ratio, self.threshold, self.reference_ratio)

    def message(self) -> str:
        again = f"; measured twice, the first time {self.first_ratio:.2f}x" if self.retried else ""
        return (f"{self.what}: speed-up {self.ratio:.2f}x, required >= {self.threshold:.2f}x "
                f"(yours {self.candidate_s * 1e3:.3f} ms, baseline {self.baseline_s * 1e3:.3f} ms; "
                f"medians of {self.rounds} paired rounds{again})")

    def assert_passes(self) -> None:
        assert self.passed, self.message()

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "passed": self.passed, "tier": self.tier}


def _checked_rounds(rounds: int) -> set[int]:
    """1-based candidate calls whose outputs are re-checked: the first, the last and a few unpredictable."""
    middle = range(2, rounds)
    return {1, rounds, *_system_random.sample(middle, min(NUM_RANDOM_CHECKS, len(middle)))}


PAIRED_ROUND = "one round = yours + the baseline"


def _label_paired(benchmark) -> None:
    """Say in pytest-benchmark's table (and --benchmark-json's "name" and "group") that a row times a whole
    paired round, the candidate and the baseline together, so its median is not read as the candidate's
    time; the speed-up itself is in pytest's "speed" section and in "extra_info"."""
    name = str(getattr(benchmark, "name", "") or "")
    if PAIRED_ROUND not in name:
        benchmark.name = f"{name} ({PAIRED_ROUND})"
    benchmark.group = f"paired rounds: {PAIRED_ROUND}"


def _paired_rounds(candidate, baseline, make_inputs, check, rounds, device_type, benchmark):
    cand_times: list[float] = []
    base_times: list[float] = []
    checked = _checked_rounds(rounds)

    def one_round() -> None:
        order = ((baseline, base_times), (candidate, cand_times))
        if len(cand_times) % 2:
            order = order[::-1]
        for fn, times in order:
            args = make_inputs()
            seconds, out = time_call(fn, args, device_type)
            times.append(seconds)
            if fn is candidate and check is not None and len(cand_times) in checked:
                check(out, args)

    if benchmark is not None and not getattr(benchmark, "disabled", False):
        _label_paired(benchmark)
        benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    else:
        for _ in range(rounds):
            one_round()
    return _median(cand_times), _median(base_times)


def speed_repeats() -> int:
    """How many times a speed test measures in one process: LAB_SPEED_REPEAT (the calibration tools set it
    for the flip check), else 1. `compare` and the figure tests (lab.figures) both follow it."""
    value = os.environ.get("LAB_SPEED_REPEAT") or "1"
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"LAB_SPEED_REPEAT must be a whole number of measurements, got {value!r}") from None


def compare(candidate: Callable, baseline: Callable, *, threshold: float, what: str,
            make_inputs: Callable[[], Inputs] = tuple, check: Callable[[Any, Inputs], None] | None = None,
            warmup: int = 3, rounds: int = 15, device_type: str | None = None,
            benchmark=None, record: Callable[[str, Any], None] | None = None) -> Comparison:
    """Time `candidate` against `baseline` in paired rounds; see the module docstring for the rules.

    `benchmark` is pytest-benchmark's fixture (each paired round is one benchmark round, so
    `--benchmark-json` keeps the timings); `record` is pytest's `record_property` (the grader reads it).
    """
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    threshold = thresholds.effective(threshold, device_type)    # a card's recorded profile, if it has one
    reference, card = thresholds.reference_ratio(device_type)   # the bonus tiers' yardstick, if recorded
    key = thresholds.current_test_key()
    began = _perf_counter()
    for _ in range(warmup):
        for fn in (baseline, candidate):
            time_call(fn, make_inputs(), device_type)
    warmup_s = _perf_counter() - began      # where a speed process's seconds go (grading.tools.gpu_check prints it)
    results = []
    for repeat in range(speed_repeats()):
        began = _perf_counter()
        cand, base = _paired_rounds(candidate, baseline, make_inputs, check, rounds, device_type,
                                    benchmark if repeat == 0 else None)
        result = Comparison(what, cand, base, threshold, rounds, key=key, card=card, reference_ratio=reference)
        if not result.passed and result.ratio >= threshold * (1 - RETRY_BAND):
            cand, base = _paired_rounds(candidate, baseline, make_inputs, check, 2 * rounds, device_type, None)
            result = Comparison(what, cand, base, threshold, 2 * rounds, retried=True, first_ratio=result.ratio,
                                key=key, card=card, reference_ratio=reference)
        result.warmup_s = round(warmup_s if repeat == 0 else 0.0, 3)
        result.measuring_s = round(_perf_counter() - began, 3)
        results.append(result)
    result = results[0]
    if benchmark is not None:
        benchmark.extra_info.update(result.as_dict())
    if record is not None:                  # the grader reads `speed`; grading.tools.calibrate reads all of them
        record("speed", result.as_dict())
        for again in results[1:]:
            record("speed_repeat", again.as_dict())
    return result


def median_seconds(fn: Callable, make_inputs: Callable[[], Inputs] = tuple, *, warmup: int = 2,
                   rounds: int = 10, device_type: str | None = None) -> float:
    """Median seconds of `fn(*make_inputs())` over `rounds` synchronized calls after `warmup` calls."""
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    for _ in range(warmup):
        time_call(fn, make_inputs(), device_type)
    return _median(time_call(fn, make_inputs(), device_type)[0] for _ in range(rounds))
