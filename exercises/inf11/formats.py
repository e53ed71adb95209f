"""inf11 · Floating-point formats: what the exponent and mantissa bits buy.

A binary float stores a sign, `e` exponent bits and `m` mantissa (fraction) bits: the value is
(1 + fraction / 2^m) * 2^(exponent - bias) with bias = 2^(e-1) - 1. The all-ones exponent is kept for
inf and NaN and the all-zeros one for zero and subnormals, so normal exponents run from 1 - bias to bias.

    format   bits  e   m   largest finite    smallest normal   eps (gap above 1)
    fp32      32   8  23   3.4e38            1.2e-38           1.2e-7
    bf16      16   8   7   3.4e38            1.2e-38           7.8e-3
    fp16      16   5  10   65,504            6.1e-5            9.8e-4

bf16 is fp32 with the last 16 mantissa bits cut off: the same range, 8 significant bits. fp16 spends
3 of those bits on precision instead of range: 8x finer steps, but nothing above 65,504.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.errors import NotStarted


@dataclass(frozen=True)
class FloatFormat:
    """The numbers that matter about a floating-point format (as `torch.finfo` reports them).

    max_value:  the largest finite value; anything larger rounds to inf (overflow).
    min_normal: the smallest positive normal value (torch.finfo's `tiny`); below it precision drops.
    eps:        the gap between 1.0 and the next value: the relative rounding step, 2^-mantissa_bits.
    """

    exponent_bits: int
    mantissa_bits: int
    max_value: float
    min_normal: float
    eps: float


def float_format(exponent_bits: int, mantissa_bits: int) -> FloatFormat:
    """The range and precision of an IEEE-754-style binary format with these field widths.

    exponent_bits: e >= 2; mantissa_bits: m >= 1 (stored fraction bits, the implicit leading 1 not counted).
    fp32 is (8, 23), bf16 (8, 7), fp16 (5, 10), float8_e5m2 (5, 2). The all-ones exponent holds inf/NaN.
    The values are Python floats, equal to torch.finfo's max, tiny and eps for the formats torch has.
    Raises ValueError for widths out of range. Hints: README.md, "Hints".
    """
    raise NotStarted("inf11: implement float_format")
