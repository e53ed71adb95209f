"""Speed figures that are not paired speed-ups: the shape of a measured curve, or agreement with a lab
measurement. Recorded the way `lab.timing.compare` records its ratios, so the grader and
`grading.tools.calibrate` see every threshold the same way: a figure `ratio` that must be >= `threshold`.

    slope, intercept, r2 = fit_line(prompt_lens, ttft_s)
    figure = record_figure("TTFT growth vs proportional", ratio=0.71, threshold=0.4, record=record_property)
    assert figure["passed"], ...

Like `compare`, a figure test measures its figure `speed_repeats()` times in one process (LAB_SPEED_REPEAT, for
the calibration tools' flip check), asserts the first and records the others with `repeat=True`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

from lab.timing import speed_repeats

__all__ = ["fit_line", "loglog_slope", "one_cpu_thread", "record_figure", "speed_repeats"]


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = slope * x + intercept through the points, and its R² (1 = a perfect line).

    Needs at least two distinct x values (ValueError otherwise). R² is 1 when every y is equal.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need two or more (x, y) points of equal count, got {len(xs)} x and {len(ys)} y")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all x values are equal: no line fits")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1.0 if total == 0 else 1.0 - residual / total


def record_figure(what: str, *, ratio: float, threshold: float, passed: bool | None = None,
                  record: Callable[[str, Any], None] | None = None, repeat: bool = False, **details: Any) -> dict:
    """Record one speed figure (higher is better; it passes when ratio >= threshold unless `passed` says
    otherwise) for the grader and `grading.tools.calibrate` (`record`, pytest's `record_property`: the test's
    `speed` property, or `speed_repeat` for a further measurement of the same figure, `repeat=True`).
    `details` (the raw measurements) travel with it. Returns the record."""
    row = {"what": what, "ratio": float(ratio), "threshold": float(threshold),
           "passed": bool(ratio >= threshold) if passed is None else bool(passed), **details}
    if record is not None:
        record("speed_repeat" if repeat else "speed", row)
    return row


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The exponent `a` of the power law y ~ x**a that fits the points best (a line in log-log space):
    about 1 for a quantity proportional to x, 0 for a flat one, 2 for a quadratic one. All values > 0."""
    if any(v <= 0 for v in list(xs) + list(ys)):
        raise ValueError("log-log slope needs positive x and y values")
    return fit_line([math.log(x) for x in xs], [math.log(y) for y in ys])[0]


@contextmanager
def one_cpu_thread(device: str = "cpu") -> Iterator[None]:
    """On a CPU, measure with one intra-op thread (restored afterwards); elsewhere do nothing.

    A curve's shape or a ratio of two measurements does not depend on the thread count, but on a shared
    machine two threads that must meet at every parallel region wait for each other whenever one is
    descheduled: on the lab's 2-core CPU at a load of ~10, a 256-token prefill took 17 s on two threads
    and 2.9 s on one, and the two-thread curve lost its shape.
    """
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
