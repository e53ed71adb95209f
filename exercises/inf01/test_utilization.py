"""inf01 tests: MFU and MBU from counted work, and a timer checked on a fake device with an exact clock."""
import pytest
import torch

from lab.fake_clock import FakeDevice
from lab.hardware import Peaks
from lab.impl import Topic
from lab.testing import raises

impl = Topic("inf01")
# measure_seconds is the timer you write: the lab's timers may not stand in for it (topic.toml bans them).


def uniform(rng, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=rng))


def test_utilization_is_achieved_rate_over_peak(rng):
    peaks = Peaks("fake", copy_bytes_per_s=uniform(rng, 1e10, 5e12), matmul_flops_per_s=uniform(rng, 1e12, 1e15),
                  matmul_dtype="bf16")
    flops, num_bytes, seconds = uniform(rng, 1e9, 1e13), uniform(rng, 1e8, 1e11), uniform(rng, 1e-4, 1.0)
    got = impl.utilization.utilization(flops, num_bytes, seconds, peaks)
    mfu = flops / seconds / peaks.matmul_flops_per_s
    mbu = num_bytes / seconds / peaks.copy_bytes_per_s
    assert got.mfu == pytest.approx(mfu, rel=1e-9), (f"MFU: expected {mfu:.6g} (FLOP/s over peak FLOP/s), got "
                                                     f"{got.mfu:.6g}")
    assert got.mbu == pytest.approx(mbu, rel=1e-9), (f"MBU: expected {mbu:.6g} (bytes/s over peak bytes/s), got "
                                                     f"{got.mbu:.6g}")
    assert got.bound == ("memory" if mbu >= mfu else "compute")


def test_utilization_of_llama_decode_on_an_h200():
    """Llama-3-8B bf16, batch 1: 15.04 GB and ~16 GFLOP per token; eager transformers runs 45 tokens/s."""
    h200 = Peaks("H200", copy_bytes_per_s=4.297e12, matmul_flops_per_s=673e12, matmul_dtype="bf16")
    got = impl.utilization.utilization(16.1e9, 15.04e9, 1 / 45, h200)
    assert got.mbu == pytest.approx(0.1575, abs=0.001), f"expected MBU ~15.8%, got {got.mbu:.1%}"
    assert got.mfu == pytest.approx(0.001077, rel=0.01), f"expected MFU ~0.11%, got {got.mfu:.3%}"
    assert got.bound == "memory"


@pytest.mark.parametrize("bad", [dict(seconds=0.0), dict(seconds=-1.0), dict(flops=-1.0), dict(num_bytes=-5.0)],
                         ids=["zero-time", "negative-time", "negative-flops", "negative-bytes"])
def test_utilization_rejects_bad_input(bad):
    args = {"flops": 1e9, "num_bytes": 1e9, "seconds": 0.1, **bad}
    peaks = Peaks("fake", 1e11, 1e12, "fp32")
    with raises(ValueError,
                because=f"utilization({bad}) has no meaningful answer: time must be > 0, flops and bytes >= 0"):
        impl.utilization.utilization(args["flops"], args["num_bytes"], args["seconds"], peaks)


def test_measure_seconds_waits_for_the_device(rng):
    """Each call spends 1 ms on the host and queues a known amount of device work, then returns."""
    dev = FakeDevice()
    work_s = uniform(rng, 0.005, 0.05)

    def fn():
        dev.host(0.001)
        dev.launch(work_s)

    got = impl.utilization.measure_seconds(fn, warmup=1, repeats=5, clock=dev.clock, synchronize=dev.synchronize)
    assert got == pytest.approx(0.001 + work_s, rel=1e-9), (
        f"each call takes {(0.001 + work_s) * 1e3:.3f} ms once its device work is done; you measured "
        f"{got * 1e3:.3f} ms: call synchronize() right before every clock read")


def test_measure_seconds_takes_the_median_after_warmup(rng):
    """Warm-up calls are 100x slower (compilation); one timed call is hit by a noisy neighbour."""
    dev = FakeDevice()
    work_s = uniform(rng, 0.005, 0.05)
    warmup, repeats = 5, 5
    calls = []

    def fn():
        calls.append(dev.clock())
        slow = len(calls) <= warmup or len(calls) == warmup + 3
        dev.launch(work_s * (100 if slow else 1))

    got = impl.utilization.measure_seconds(fn, warmup=warmup, repeats=repeats, clock=dev.clock,
                                           synchronize=dev.synchronize)
    assert len(calls) == warmup + repeats, f"expected {warmup} warm-up + {repeats} timed calls, saw {len(calls)}"
    assert got == pytest.approx(work_s, rel=1e-9), (
        f"the typical call takes {work_s * 1e3:.3f} ms; you report {got * 1e3:.3f} ms (warm-up excluded? median, "
        "not mean?)")
    with raises(ValueError, because="measure_seconds(repeats=0) has nothing to take the median of"):
        impl.utilization.measure_seconds(fn, repeats=0, clock=dev.clock, synchronize=dev.synchronize)


@pytest.mark.gpu
def test_measure_seconds_waits_for_the_gpu():
    cycles = int(4e7)                       # ~20 ms at 2 GHz, more at a lower clock

    got = impl.utilization.measure_seconds(lambda: torch.cuda._sleep(cycles), warmup=1, repeats=3)
    assert got > 0.010, f"{got * 1e3:.3f} ms for ~20 ms of queued GPU work: the timer did not wait for the GPU"
