from solutions.inf03.stats import *  # noqa: F401,F403
import numpy as np


def percentile(values, q):
    if not len(values) or not 0 <= q <= 100:
        raise ValueError("bad input")
    return float(np.percentile(values, q))


def summarize(values):
    if not len(values):
        raise ValueError("cannot summarize no values")
    p50, p95, p99 = (float(p) for p in np.percentile(values, [50, 95, 99]))
    return LatencyStats(count=len(values), mean=float(np.mean(values)), p50=p50, p95=p95, p99=p99,
                        min=min(values), max=max(values))
