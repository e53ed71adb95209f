"""The machine: its device and measured peaks (copy bandwidth, matmul FLOP/s) for roofline ratios.

Peaks are measured, not taken from datasheets, once per process (a few hundred ms) and cached:
a fraction of a *measured* ceiling is what a speed test can fairly ask for on any machine.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

import torch


def device() -> torch.device:
    """cuda:0 when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(dev: torch.device | str | None = None) -> None:
    """Wait for queued device work (a no-op on the CPU)."""
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_name(dev: torch.device | str | None = None) -> str:
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Peaks:
    """Measured ceilings of one device. Bandwidth counts bytes read plus bytes written."""

    device: str
    copy_bytes_per_s: float
    matmul_flops_per_s: float
    matmul_dtype: str

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte above which work is compute-bound on this device (the roofline's knee)."""
        return self.matmul_flops_per_s / self.copy_bytes_per_s


def _median_seconds(fn, dev: torch.device, repeats: int) -> float:
    fn()
    synchronize(dev)
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            import time
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_copy_bandwidth(dev: torch.device | str | None = None, num_bytes: int | None = None,
                           repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy of `num_bytes` (read + write counted)."""
    dev = torch.device(dev) if dev is not None else device()
    num_bytes = num_bytes or (1 << 30 if dev.type == "cuda" else 1 << 28)
    src = torch.empty(num_bytes // 4, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    seconds = _median_seconds(lambda: dst.copy_(src), dev, repeats)
    return 2 * src.numel() * 4 / seconds


def measure_matmul_flops(dev: torch.device | str | None = None, size: int | None = None,
                         dtype: torch.dtype | None = None, repeats: int = 10) -> float:
    """FLOP/s of a square matmul (bf16 on a GPU, fp32 on a CPU), on random data."""
    dev = torch.device(dev) if dev is not None else device()
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    size = size or (8192 if dev.type == "cuda" else 1024)
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    seconds = _median_seconds(lambda: a @ b, dev, repeats)
    return 2 * size**3 / seconds


@functools.cache
def peaks(dev: str | None = None) -> Peaks:
    """The device's measured peaks, measured on first use and cached for the process."""
    d = torch.device(dev) if dev is not None else device()
    dtype = torch.bfloat16 if d.type == "cuda" else torch.float32
    return Peaks(device=device_name(d), copy_bytes_per_s=measure_copy_bandwidth(d),
                 matmul_flops_per_s=measure_matmul_flops(d, dtype=dtype), matmul_dtype=str(dtype))
