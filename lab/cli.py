"""argparse types for the lab's commands: a bad number gets one line from argparse, never a traceback.

    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--batch", type=int_list, default="1,16,32")
"""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1, at least one ("1,16,32")."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} names no number (expected e.g. 1,16,32)")
    return [positive_int(p) for p in parts]
