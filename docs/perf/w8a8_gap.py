"""Where does inf14's W8A8 speed-up go between triton.testing.do_bench (1.62-1.75x cuBLAS bf16 on an H100) and
the speed test's own timing (lab.timing.compare: 1.39-1.45x)? Issue 10. Same shape (M=8192, K=4096, N=14336),
the reference's w8a8_matmul_triton against F.linear in bf16, timed six ways that each change one thing:

  A  do_bench, each side alone, L2 flushed between calls, calls back to back (the sweep's figure)
  B  one synchronized call at a time with device events, fixed inputs, each side alone (15 calls)
  C  as B, the two sides alternating call by call (the test's order), fixed inputs
  D  as C with fresh inputs before every call (the test's make_inputs): the test's timing without its checks
  E  as D, but a 2 ms GPU spin queued before the start event, so the host's launch work (argument checks,
     Triton's launcher) overlaps it and only the device's time is counted
  F  lab.timing.compare itself: time_w8a8_against_bf16, the speed test's function, 15 paired rounds

plus each side's host time to return from a call (nothing synchronized), and the SM clock after each way.
Predictions (session 9, before any run): A-B small (<3%: per-call launch and sync); B-C the clocks under
alternation (unknown sign); D-E the host's launch work, under 5% (~50 us of a ~0.9 ms kernel); F = D.
Run from the repository root on the GPU machine: python docs/perf/w8a8_gap.py
"""
import os
import statistics
import sys
import time

os.environ.setdefault("LAB_IMPL", "solutions")
sys.path.insert(0, ".")

import torch                                        # noqa: E402
import torch.nn.functional as F                     # noqa: E402
from triton.testing import do_bench                 # noqa: E402

from exercises.inf14.test_int8_matmul import W8A8_SHAPE, time_w8a8_against_bf16, w8a8_speed_inputs   # noqa: E402
from solutions.inf14.int8_matmul import w8a8_matmul_triton                                            # noqa: E402

M, K, N = W8A8_SHAPE
dev = "cuda"
wq, w_scale, w_bf16, fresh = w8a8_speed_inputs(M, K, N, dev)        # the speed test's own operands


def int8_side(xq, x_scale, x):
    return w8a8_matmul_triton(xq, x_scale, wq, w_scale)


def bf16_side(xq, x_scale, x):
    return F.linear(x, w_bf16)


def clock() -> str:
    try:
        return f"{torch.cuda.clock_rate()} MHz"
    except Exception as error:          # no pynvml: say so, measure on
        return f"clock unknown ({type(error).__name__})"


def timed(fn, args, spin_ms: float = 0.0) -> float:
    torch.cuda.synchronize()
    if spin_ms:
        torch.cuda._sleep(int(spin_ms * 2e6))      # cycles: ~1 ms per 2e6 at an H100/H200's ~2 GHz
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn(*args)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def ratio_line(name: str, t_int: list[float], t_bf: list[float]) -> None:
    a, b = statistics.median(t_int), statistics.median(t_bf)
    print(f"{name}  int8 {a:.3f} ms  bf16 {b:.3f} ms  ratio {b / a:.3f}x   ({clock()})", flush=True)


fixed = fresh()
for _ in range(5):
    int8_side(*fixed), bf16_side(*fixed)
torch.cuda.synchronize()

t_bf = do_bench(lambda: bf16_side(*fixed), warmup=100, rep=500, return_mode="median")
t_int = do_bench(lambda: int8_side(*fixed), warmup=100, rep=500, return_mode="median")
ratio_line("A do_bench, alone       ", [t_int], [t_bf])

ratio_line("B synced, alone         ", [timed(int8_side, fixed) for _ in range(15)],
           [timed(bf16_side, fixed) for _ in range(15)])

ti, tb = [], []
for i in range(15):
    for fn, times in ((int8_side, ti), (bf16_side, tb))[:: 1 if i % 2 else -1]:
        times.append(timed(fn, fixed))
ratio_line("C synced, alternating   ", ti, tb)

for name, spin in (("D fresh inputs          ", 0.0), ("E fresh, 2 ms spin first", 2.0)):
    ti, tb = [], []
    for i in range(15):
        for fn, times in ((int8_side, ti), (bf16_side, tb))[:: 1 if i % 2 else -1]:
            times.append(timed(fn, fresh(), spin))
    ratio_line(name, ti, tb)

result = time_w8a8_against_bf16(M, K, N, dev, threshold=1.1)
print(f"F lab.timing.compare     int8 {result.candidate_s * 1e3:.3f} ms  bf16 {result.baseline_s * 1e3:.3f} ms  "
      f"ratio {result.ratio:.3f}x   ({clock()})", flush=True)

for name, fn in (("int8", int8_side), ("bf16", bf16_side)):
    host = []
    for _ in range(15):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(*fixed)
        host.append(time.perf_counter() - t0)
    print(f"host time to return, {name}: median {statistics.median(host) * 1e6:.0f} us", flush=True)
torch.cuda.synchronize()
