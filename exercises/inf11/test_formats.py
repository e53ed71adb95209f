"""inf11 tests: the range and precision of a float format, from its bit widths, against torch.finfo."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import raises

impl = Topic("inf11")

# (exponent bits, mantissa bits) of each format, from its IEEE-754 / OCP definition.
WIDTHS = {torch.float32: (8, 23), torch.bfloat16: (8, 7), torch.float16: (5, 10), torch.float8_e5m2: (5, 2)}


@pytest.mark.parametrize("dtype", list(WIDTHS), ids=str)
def test_float_format_matches_torch_finfo(dtype):
    e, m = WIDTHS[dtype]
    got, want = impl.formats.float_format(e, m), torch.finfo(dtype)
    for field, expected in (("max_value", want.max), ("min_normal", want.tiny), ("eps", want.eps)):
        value = getattr(got, field)
        assert value == pytest.approx(expected, rel=1e-12), (
            f"{dtype} ({e} exponent bits, {m} mantissa bits): {field} should be {expected:.6g}, got {value:.6g}"
            + (" (the all-ones exponent is reserved for inf and NaN)" if field == "max_value" else ""))
    assert (got.exponent_bits, got.mantissa_bits) == (e, m)


def test_fp16_range_is_why_it_overflows_and_bf16_does_not():
    """The real model's massive activation (~24,600) squared: past fp16's largest value, far inside bf16's."""
    fp16, bf16 = impl.formats.float_format(5, 10), impl.formats.float_format(8, 7)
    square = 24_600.0 ** 2
    assert fp16.max_value < square < bf16.max_value, \
        f"24,600^2 = {square:.3g} must overflow fp16 (max {fp16.max_value:.6g}) but not bf16 (max {bf16.max_value:.6g})"
    assert bf16.eps == 8 * fp16.eps, "bf16 keeps 3 fewer mantissa bits than fp16: steps 8x coarser"


@pytest.mark.parametrize("widths", [(1, 10), (5, 0), (0, 0)])
def test_float_format_rejects_bad_widths(widths):
    with raises(ValueError, because=f"float_format{widths}: a float needs >= 2 exponent bits and >= 1 mantissa bit"):
        impl.formats.float_format(*widths)
