"""Speed thresholds per GPU: the calibrated default of each speed test, or a card's recorded profile.

Every speed test states its threshold in its own file (the calibrated default: the reference clears it by
20% and the naive version misses it on the cards docs/thresholds.md names). An instructor whose GPU is
another card runs `python -m grading.tools.gpu_check --write`: where a default does not hold there (the
reference misses the 20% margin, or the naive version passes), it records a threshold that does, in
`lab/profiles/<card>.toml`, and `lab.timing.compare` uses it on that card from then on:

    gpu = "NVIDIA H100 80GB HBM3"
    written = "2026-12-06 python -m grading.tools.gpu_check --write"
    [thresholds]
    "inf12::test_batch_of_16_has_6x_the_throughput" = 5.5

Keys are `<topic>::<test name with parameters>`, the test pytest is running when `compare` is called.
A profile only ever applies to the card whose name it carries; on any other device the defaults hold.
"""
from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "profiles"
_NODE = re.compile(r"(?:^|/)(inf\d\d)/[^:]*::(\S+)")


def card_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (the profile's file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def profile_path(card: str) -> Path:
    return PROFILES / f"{card_slug(card)}.toml"


@functools.cache
def load_profile(card: str) -> dict[str, float]:
    """The recorded thresholds of `card` ({} when it has no profile). A profile that names another card
    or holds a non-number is refused with a message, never silently used."""
    path = profile_path(card)
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("gpu") != card:
        raise ValueError(f"{path}: its 'gpu' is {data.get('gpu')!r}, not this card ({card!r}); "
                         "rewrite it with python -m grading.tools.gpu_check --write on this card")
    table = data.get("thresholds", {})
    bad = {k: v for k, v in table.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0}
    if bad:
        raise ValueError(f"{path}: thresholds must be positive numbers, got {bad}")
    return {k: float(v) for k, v in table.items()}


def current_test_key() -> str | None:
    """`<topic>::<test[params]>` of the test pytest is running now, or None outside a topic's test."""
    match = _NODE.search(os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0])
    return f"{match.group(1)}::{match.group(2)}" if match else None


def effective(default: float, device_type: str) -> float:
    """The threshold a speed test must clear here: its card's recorded value, else `default`."""
    if device_type != "cuda":
        return default
    import torch
    key = current_test_key()
    if key is None or not torch.cuda.is_available():
        return default
    return load_profile(torch.cuda.get_device_name()).get(key, default)
