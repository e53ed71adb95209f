"""inf03 · Latency statistics: percentiles, because means hide the requests users complain about.

A P99 TTFT of 2 s means one request in a hundred waits two seconds or more, whatever the mean says.
Percentiles here interpolate linearly between the closest ranks, as numpy's default (`method="linear"`,
the R-7 definition) does, so a figure from this harness compares with one from numpy, vLLM's
benchmark_serving or a spreadsheet.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from lab.errors import NotStarted


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `values`, interpolating linearly between closest ranks.

    With the values sorted as v[0] <= ... <= v[n-1], the percentile sits at fractional index
    i = q / 100 * (n - 1), interpolated linearly between the two values around it. Equal to
    `numpy.percentile(values, q)` (a float), which is off limits here: the tests compare you with it.
    `values` is not modified. Raises ValueError on no values or q outside [0, 100].
    """
    raise NotStarted("inf03: implement percentile")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a list of latencies in seconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Sequence[float]) -> LatencyStats:
    """count, mean, P50, P95, P99, min and max of `values` (seconds). ValueError on no values."""
    raise NotStarted("inf03: implement summarize")
