from solutions.inf01.utilization import *  # noqa: F401,F403
import time

from lab.hardware import synchronize as _device_sync


def measure_seconds(fn, *, warmup=2, repeats=10, clock=time.perf_counter, synchronize=None):
    sync = synchronize or _device_sync
    sync()
    start = clock()
    for _ in range(warmup + repeats):
        fn()
    sync()
    return (clock() - start) / (warmup + repeats)
