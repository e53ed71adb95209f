from solutions.inf01.utilization import *  # noqa: F401,F403
import statistics
import time


def measure_seconds(fn, *, warmup=2, repeats=10, clock=time.perf_counter, synchronize=None):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)
