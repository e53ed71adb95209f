"""The machine a grading run happened on: Python, platform, torch and its CUDA devices.

`describe()` never imports torch unless asked to (`import_torch=True`): the pytest plugin calls it
after the tests have run, when the lab's conftest has already imported torch, and the grader calls it
in a throw-away subprocess (`python -m grading.hardware`) only when no topic reported the hardware,
so a CUDA driver that hangs or crashes on initialisation cannot take the grader down with it.

Invariant: the returned dict always has the keys of `EMPTY`, with JSON-serialisable values.
"""
from __future__ import annotations

import json
import platform
import sys

EMPTY = {"python": "", "platform": "", "machine": "", "torch": None, "cuda": False,
         "device_count": 0, "device_name": None}


def describe(import_torch: bool = False) -> dict:
    """What this process can see. `torch` is None when torch is not (or may not be) imported."""
    info = dict(EMPTY, python=platform.python_version(), platform=platform.platform(terse=True),
                machine=platform.machine())
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        try:
            import torch  # noqa: F811  (only in the probe subprocess)
        except Exception:  # noqa: BLE001 - a broken torch install is reported as "no torch"
            torch = None
    if torch is None:
        return info
    info["torch"] = str(getattr(torch, "__version__", "unknown"))
    try:
        if torch.cuda.is_available():
            info["cuda"] = True
            info["device_count"] = int(torch.cuda.device_count())
            info["device_name"] = str(torch.cuda.get_device_name(0))
    except Exception as exc:  # noqa: BLE001 - a CUDA error is a fact about the machine, not a crash
        info["device_name"] = f"CUDA error: {exc}".splitlines()[0]
    return info


if __name__ == "__main__":
    print(json.dumps(describe(import_torch=True)))
