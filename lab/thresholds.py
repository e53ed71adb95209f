"""Speed thresholds and tiers per GPU: each speed test's calibrated default, or a card's recorded profile.

Every speed test states its threshold in its own file (the calibrated default: the reference clears it by
20% and the naive version misses it on the cards docs/thresholds.md names). An instructor whose GPU is
another card runs `python -m grading.tools.gpu_check --write`: where a default does not hold there (the
reference misses the 20% margin, or the naive version passes), it records a threshold that does, in
`lab/profiles/<card>.toml`, and `lab.timing.compare` uses it on that card from then on. The same command
(and `python -m grading.tools.calibrate --write-reference`) records the reference's own ratio on the card,
the median of its calibration measurements, which the bonus tiers are measured against:

    gpu = "NVIDIA H100 80GB HBM3"
    written = "2026-12-06 python -m grading.tools.gpu_check --write"
    [thresholds]
    "inf12::test_batch_of_16_has_6x_the_throughput" = 5.5
    [reference]
    "inf12::test_batch_of_16_has_6x_the_throughput" = 14.8

Keys are `<topic>::<test name with parameters>`, the test pytest is running when `compare` is called.
A profile only ever applies to the card whose name it carries; on any other device the defaults hold.

Tiers (`tier`): "below threshold" (no speed points), "pass" (the threshold: the test's points), and two
bonus tiers that carry no points, "silver" at 70% and "gold" at 90% of the reference's ratio on the same
card. Where the card has no reference figure (a CPU, or a card no one calibrated), the best tier is "pass"
and the tier's line says so; a figure is never guessed from another card.
"""
from __future__ import annotations

import functools
import json
import os
import re
import time
import tomllib
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "profiles"
_NODE = re.compile(r"(?:^|/)(inf\d\d)/[^:]*::(\S+)")


def card_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (the profile's file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def profile_path(card: str) -> Path:
    return PROFILES / f"{card_slug(card)}.toml"


TABLES = ("thresholds", "reference")
BONUS_TIERS = (("gold", 0.9), ("silver", 0.7))      # fractions of the reference's ratio on the same card
BELOW, PASS = "below threshold", "pass"
TIERS = (BELOW, PASS) + tuple(name for name, _ in reversed(BONUS_TIERS))       # worst to best


@functools.cache
def _read_profile(card: str) -> dict[str, dict[str, float]]:
    """{"thresholds": {key: x}, "reference": {key: ratio}} of `card` (empty tables when it has no profile).
    A profile that names another card, or holds a non-number or an unknown table, is refused with a
    message, never silently used."""
    path = profile_path(card)
    if not path.is_file():
        return {name: {} for name in TABLES}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML ({error}); rewrite it with "
                         "python -m grading.tools.gpu_check --write on this card") from None
    if data.get("gpu") != card:
        raise ValueError(f"{path}: its 'gpu' is {data.get('gpu')!r}, not this card ({card!r}); "
                         "rewrite it with python -m grading.tools.gpu_check --write on this card")
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in TABLES)
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; a profile has {list(TABLES)}")
    tables = {}
    for name in TABLES:
        table = data.get(name, {})
        bad = {k: v for k, v in table.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0}
        if bad:
            raise ValueError(f"{path}: [{name}] values must be positive numbers, got {bad}")
        tables[name] = {k: float(v) for k, v in table.items()}
    return tables


def load_profile(card: str) -> dict[str, float]:
    """The recorded thresholds of `card` ({} when it has no profile)."""
    return _read_profile(card)["thresholds"]


def load_references(card: str) -> dict[str, float]:
    """The reference's calibrated ratio per speed test key on `card` ({} when none was recorded)."""
    return _read_profile(card)["reference"]


def write_profile(card: str, *, thresholds: dict[str, float] | None = None,
                  references: dict[str, float] | None = None, written_by: str) -> Path:
    """Merge `thresholds` and `references` into `card`'s profile (kept entries stay) and write it."""
    path = profile_path(card)
    old = _read_profile(card)
    tables = {"thresholds": {**old["thresholds"], **(thresholds or {})},
              "reference": {**old["reference"], **(references or {})}}
    bad = {k: v for table in tables.values() for k, v in table.items() if not v > 0}
    if bad:
        raise ValueError(f"refusing to write non-positive figures into {path}: {bad}")
    lines = [f"gpu = {json.dumps(card)}", f"written = {json.dumps(time.strftime('%Y-%m-%d ') + written_by)}"]
    for name, table in tables.items():         # a JSON string is a TOML basic string
        if table:
            lines += ["", f"[{name}]"] + [f"{json.dumps(key)} = {value:.4g}" for key, value in sorted(table.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _read_profile.cache_clear()
    return path


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


def reference_ratio(device_type: str) -> tuple[float | None, str | None]:
    """(the reference's calibrated ratio for the running test on this card or None, the card's name or None)."""
    if device_type != "cuda":
        return None, None
    import torch
    if not torch.cuda.is_available():
        return None, None
    card, key = torch.cuda.get_device_name(), current_test_key()
    return (load_references(card).get(key) if key else None), card


def tier(ratio: float, threshold: float, reference: float | None) -> str:
    """The tier a measured `ratio` reaches: below threshold, pass, or a bonus tier (see the module docstring)."""
    if not ratio >= threshold:              # NaN is below too
        return BELOW
    for name, fraction in BONUS_TIERS:
        if reference is not None and ratio >= fraction * reference:
            return name
    return PASS


def tier_line(ratio: float, threshold: float, reference: float | None, card: str | None) -> str:
    """One line for a person: the tier, and what it was measured against."""
    name = tier(ratio, threshold, reference)
    bonus = ", ".join(f"{n} >= {f:.0%}" for n, f in reversed(BONUS_TIERS))
    if reference is None:
        return f"tier {name}; no reference figure for this card ({card or 'CPU'}), so no bonus tier"
    return (f"tier {name}: {ratio / reference:.0%} of the reference's {reference:.2f}x on {card} "
            f"({bonus} of it; bonus only, no points)")


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seconds(seconds: float) -> str:
    """0.000012 -> '12 us', 0.544951 -> '545 ms', 7.8457 -> '7.85 s'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e6:.3g} us"


def speed_line(row: dict) -> str:
    """The line a person sees for one recorded speed figure (pytest's "speed" section, the scorecard):
    what was measured and the ratio against its threshold, passed or missed."""
    what, ratio, threshold = row.get("what", "speed"), _number(row.get("ratio")), _number(row.get("threshold"))
    if ratio is None or threshold is None:
        return f"{what}: no ratio recorded"
    verdict = "passed" if row.get("passed", ratio >= threshold) else "missed"
    if "candidate_s" not in row:                # a measured figure (lab.figures), not a speed-up: no tiers
        return f"{what}: {ratio:.3g}, threshold {threshold:g}, {verdict} (a measured figure, no tiers)"
    cand, base = _number(row.get("candidate_s")), _number(row.get("baseline_s"))
    times = "" if cand is None or base is None else \
        f" (yours {_seconds(cand)}, baseline {_seconds(base)}; medians of {row.get('rounds', '?')} paired rounds)"
    return f"{what}: speed-up {ratio:.2f}x, threshold {threshold:g}x, {verdict}{times}"


def row_tier(row: dict) -> tuple[str, str] | None:
    """(tier, line) of a recorded paired comparison (`lab.timing.compare`); None for a measured figure
    (lab.figures: not a speed-up, so no tiers) or a record without figures."""
    ratio, threshold = _number(row.get("ratio")), _number(row.get("threshold"))
    if "candidate_s" not in row or ratio is None or threshold is None:
        return None
    reference = _number(row.get("reference_ratio"))
    reference = reference if reference is not None and reference > 0 else None
    card = row.get("card") if isinstance(row.get("card"), str) else None
    return tier(ratio, threshold, reference), tier_line(ratio, threshold, reference, card)
