"""How the notebooks print a measured ratio: in words a reader cannot misread.

    speedup_text(0.0092)   # '109x slower'   (never 'speed-up 0.00x')
    speedup_text(3.456)    # '3.46x faster'

A ratio is baseline time / your time, as `lab.timing.Comparison.ratio`. Plot times that differ by more than
~10x on a log axis (`ax.set_yscale("log")`), or the small bars vanish.
"""
from __future__ import annotations

import math


def speedup_text(ratio: float) -> str:
    """'3.46x faster', '12.3x faster', '109x slower', 'as fast' (within 0.5%) for baseline time / your time."""
    if not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        return f"ratio {ratio!r} (not a positive number: was a time zero?)"
    if abs(ratio - 1) < 0.005:
        return "as fast"
    factor, word = (ratio, "faster") if ratio > 1 else (1 / ratio, "slower")
    digits = 2 if factor < 10 else 1 if factor < 100 else 0
    return f"{factor:.{digits}f}x {word}"
