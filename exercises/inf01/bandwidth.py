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
from lab.errors import NotStarted

from .utilization import measure_seconds


def copy_bandwidth(num_bytes: int, device: torch.device | str | None = None, repeats: int = 10) -> float:
    """Bytes per second of `dst.copy_(src)` for float32 buffers of `num_bytes` bytes each on `device`.

    Count both sides: a copy reads num_bytes and writes num_bytes. Allocate (and fill) both buffers once,
    before timing; time only the copies, with the device synchronized (use `measure_seconds`: one warm-up
    copy touches every page of `dst`, the median of `repeats` copies is the figure).
    num_bytes: a positive multiple of 4 (float32 elements); ValueError otherwise.
    device:    default lab.hardware.device() (the GPU when there is one).
    Hint: `torch.empty(num_bytes // 4, device=device).uniform_()`; `torch.empty_like(src)`.
    """
    raise NotStarted("inf01: implement copy_bandwidth")
