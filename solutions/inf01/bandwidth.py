"""inf01 · Copy bandwidth: measure the memory ceiling yourself.

Every MBU figure divides by a bandwidth, so measure it the way a decode step uses memory: a buffer far
larger than any cache, copied device-to-device, counting the bytes read *and* the bytes written. Counting
only one side halves the figure; a buffer that fits in cache, a timer that does not wait for the GPU,
or an allocation inside the timed region each make it meaningless in its own way. An H200 copies about
4.3 TB/s (of 4.8 TB/s on the datasheet); the lab's 2-core CPU about 5-10 GB/s, depending on its neighbours.
"""
from __future__ import annotations

import torch

from lab.hardware import device as default_device, synchronize

from .utilization import measure_seconds


def copy_bandwidth(num_bytes: int, device: torch.device | str | None = None, repeats: int = 10) -> float:
    """Bytes per second of `dst.copy_(src)` for float32 buffers of `num_bytes` bytes each on `device`.

    Returns 2 * num_bytes (a copy reads num_bytes and writes num_bytes) divided by the median seconds of
    `repeats` synchronized copies after one warm-up copy (`measure_seconds`). Only the copies are timed:
    no allocation or filling inside the timed calls, and `src` holds real values, not untouched memory.
    num_bytes: a positive multiple of 4 (float32 elements); ValueError otherwise.
    device:    default lab.hardware.device() (the GPU when there is one). Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if not isinstance(num_bytes, int) or num_bytes < 4 or num_bytes % 4:
        raise ValueError(f"num_bytes must be a positive multiple of 4 (float32 elements), got {num_bytes!r}")
    device = torch.device(device) if device is not None else default_device()
    src = torch.empty(num_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = measure_seconds(lambda: dst.copy_(src), warmup=1, repeats=repeats,
                              synchronize=lambda: synchronize(device))
    return 2 * num_bytes / seconds
    # END SOLUTION
