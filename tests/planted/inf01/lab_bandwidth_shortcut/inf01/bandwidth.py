from solutions.inf01.bandwidth import *  # noqa: F401,F403
from lab.hardware import measure_copy_bandwidth


def copy_bandwidth(num_bytes, device=None, repeats=10):
    if not isinstance(num_bytes, int) or num_bytes < 4 or num_bytes % 4:
        raise ValueError(f"bad num_bytes {num_bytes!r}")
    return measure_copy_bandwidth(device, num_bytes)
