from solutions.inf11.formats import *  # noqa: F401,F403


def float_format(exponent_bits, mantissa_bits):
    if exponent_bits < 2 or mantissa_bits < 1:
        raise ValueError("bad widths")
    bias = 2 ** (exponent_bits - 1) - 1
    eps = 2.0 ** -mantissa_bits
    return FloatFormat(exponent_bits, mantissa_bits, max_value=(2 - eps) * 2.0 ** (bias + 1),   # wrong
                       min_normal=2.0 ** (1 - bias), eps=eps)
