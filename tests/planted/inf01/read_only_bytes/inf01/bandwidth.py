from solutions.inf01.bandwidth import *  # noqa: F401,F403
import torch

from lab.hardware import synchronize
from solutions.inf01.utilization import measure_seconds


def copy_bandwidth(num_bytes, device=None, repeats=10):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    src = torch.empty(num_bytes // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = measure_seconds(lambda: dst.copy_(src), warmup=1, repeats=repeats, synchronize=lambda: synchronize(device))
    return num_bytes / seconds          # forgets the bytes written
