from solutions.inf01.bandwidth import *  # noqa: F401,F403
import torch

from lab.hardware import synchronize
from solutions.inf01.utilization import measure_seconds


def copy_bandwidth(num_bytes, device=None, repeats=10):
    if not isinstance(num_bytes, int) or num_bytes < 4 or num_bytes % 4:
        raise ValueError(f"bad num_bytes {num_bytes!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    src = torch.empty(num_bytes // 4, device=device).uniform_()
    seconds = measure_seconds(lambda: torch.empty_like(src).copy_(src), warmup=1, repeats=repeats,
                              synchronize=lambda: synchronize(device))
    return 2 * num_bytes / seconds
