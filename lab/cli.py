"""argparse types for the lab's commands: a bad number gets one line from argparse, never a traceback.

    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--batch", type=int_list, default="1,16,32")
    parser.add_argument("--timeout", type=checked(float, "a number of seconds", lambda s: s > 0, "give more than 0"))
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


def checked(convert: Callable[[str], T], what: str, ok: Callable[[T], bool], rule: str) -> Callable[[str], T]:
    """An argparse type: `convert(text)` (else "'text' is not <what>"), then `ok(value)` (else "'text': <rule>").
    A float that is not finite (nan, inf) never passes."""
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"{text!r}: {rule}")
        return value
    return parse


positive_int = checked(int, "a whole number", lambda v: v >= 1, "must be at least 1")
positive_float = checked(float, "a number", lambda v: v > 0, "must be a finite number above 0")


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1, at least one ("1,16,32")."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} names no number (expected e.g. 1,16,32)")
    return [positive_int(p) for p in parts]


def use_impl(parser: argparse.ArgumentParser, impl: str | None) -> None:
    """Point LAB_IMPL at `impl` (None: keep the environment's) and stop with one argparse line if it names
    neither exercises, solutions nor a folder."""
    from lab.impl import impl_root
    if impl:
        os.environ["LAB_IMPL"] = impl
    try:
        impl_root()
    except ValueError as error:
        parser.error(str(error))


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Stop with one argparse line when `device` is cuda and this machine has no CUDA GPU."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA GPU")
