"""inf01 hidden tests: the timer, the bandwidth and the profiler on other repeats, sizes and operators."""
import statistics

import pytest
import torch
import torch.nn.functional as F

from lab.fake_clock import FakeDevice
from lab.hardware import Peaks
from lab.impl import Topic
from lab.testing import SlowCopies, pick, raises

impl = Topic("inf01")


def test_hidden_measure_seconds_even_repeats_no_warmup(rng):
    """warmup=0, an even number of repeats, every call a different length: the median of exactly those."""
    dev = FakeDevice()
    repeats = 2 * pick(rng, 2, 4)
    durations = [0.001 * pick(rng, 1, 90) for _ in range(repeats)]
    calls = []

    def fn():
        calls.append(1)
        dev.host(0.0005)
        dev.launch(durations[len(calls) - 1])

    got = impl.utilization.measure_seconds(fn, warmup=0, repeats=repeats, clock=dev.clock,
                                           synchronize=dev.synchronize)
    assert len(calls) == repeats, f"warmup=0, repeats={repeats}: expected {repeats} calls, saw {len(calls)}"
    expected = statistics.median(0.0005 + d for d in durations)
    assert got == pytest.approx(expected, rel=1e-9), (
        f"calls took {[round((0.0005 + d) * 1e3, 3) for d in durations]} ms: their median is {expected * 1e3:.3f} ms, "
        f"you report {got * 1e3:.3f} ms")
    with raises(ValueError, because="measure_seconds(warmup=-1): a negative number of warm-up calls"):
        impl.utilization.measure_seconds(fn, warmup=-1, repeats=3, clock=dev.clock, synchronize=dev.synchronize)


def test_hidden_copy_bandwidth_with_few_repeats(rng):
    """repeats=3, another buffer size and copy time: still 2 x bytes / seconds per copy."""
    num_bytes = 4 * (pick(rng, 3_000, 9_000) | 1)
    seconds = 0.015
    with SlowCopies(seconds) as mode:
        got = impl.bandwidth.copy_bandwidth(num_bytes, "cpu", repeats=3)
    expected = 2 * num_bytes / seconds
    assert 3 <= mode.num_copies <= 5, ("repeats=3: expected 3 timed copies after at most two warm-ups, saw "
                                       f"{mode.num_copies}")
    assert 0.75 * expected <= got <= 1.05 * expected, (
        f"each copy of {num_bytes:,} bytes took {seconds * 1e3:.0f} ms: {expected / 1e6:.2f} MB/s counting "
        f"read + write bytes; you report {got / 1e6:.2f} MB/s")


def test_hidden_utilization_compute_bound_and_zero_work(rng):
    """A prefill-like point (compute bound), and zero bytes or zero FLOPs (allowed, not an error)."""
    peaks = Peaks("fake", copy_bytes_per_s=1e9 * pick(rng, 50, 5000), matmul_flops_per_s=1e12 * pick(rng, 10, 900),
                  matmul_dtype="bf16")
    seconds = 1e-3 * pick(rng, 1, 500)
    flops = 0.7 * peaks.matmul_flops_per_s * seconds
    num_bytes = 0.05 * peaks.copy_bytes_per_s * seconds
    got = impl.utilization.utilization(flops, num_bytes, seconds, peaks)
    assert got.mfu == pytest.approx(0.7, rel=1e-9) and got.mbu == pytest.approx(0.05, rel=1e-9), (got.mfu, got.mbu)
    assert got.bound == "compute"
    none = impl.utilization.utilization(0.0, 0.0, seconds, peaks)
    assert none.mfu == 0 and none.mbu == 0


def test_hidden_profile_ops_counts_addmm_and_self_time(rng, tmp_path):
    """F.linear with a bias runs aten::addmm under aten::linear; warmup=0 runs fn exactly once."""
    m, k, n = (pick(rng, 300, 420) | 1 for _ in range(3))
    reps = pick(rng, 2, 4)
    x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
    runs = []

    def work():
        runs.append(1)
        for _ in range(reps):
            F.linear(x, w, b)

    result = impl.profiling.profile_ops(work, device_type="cpu", top_k=None, warmup=0)
    assert len(runs) == 1, f"warmup=0: fn should run once, ran {len(runs)} times"
    addmm, linear = result.op("aten::addmm"), result.op("aten::linear")
    assert addmm is not None and linear is not None, ("expected aten::linear and aten::addmm, got "
                                                      f"{[o.name for o in result.ops]}")
    assert addmm.calls == reps, f"aten::addmm ran {reps} times, you report {addmm.calls}"
    assert addmm.flops == reps * 2 * m * k * n, (f"aten::addmm: {reps * 2 * m * k * n:,} FLOPs expected, got "
                                                 f"{addmm.flops:,}")
    times = [op.time_s for op in result.ops]
    assert times == sorted(times, reverse=True), f"ops must be sorted by time_s, largest first: {times[:6]}"
    assert linear.time_s < 0.5 * addmm.time_s, "report each op's self time, not its total"
