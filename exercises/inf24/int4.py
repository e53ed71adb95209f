"""inf24 · Group-wise int4: 16 levels per weight, two weights a byte, one fp16 scale per group.

Symmetric int4 with groups of `group_size` consecutive weights along K (the input dimension):

    scale = fp16(max(max |w| over the group / 7, 2^-14))   one per group: [N, K / group_size]
    code  = clamp(round(w / scale), -8, 7)            signed, 4 bits
    stored nibble = code + 8                          unsigned 0..15 (so -8 -> 0, 0 -> 8, 7 -> 15)

The scale is rounded to fp16 *before* the codes are computed, so that dequantization (code * stored
scale) errs by at most half a step of the scale actually stored. The floor 2^-14 is fp16's smallest normal
number: below it fp16 keeps fewer bits (a scale under 2^-25 rounds to 0 and its codes to NaN; a subnormal one
can round down so far that codes clamp at 7), so a group with max |w| < 7 * 2^-14 gets the scale 2^-14 and
small codes instead. A group of zeros gets the scale 1.0 and dequantizes to zeros. Nibble layout: element 2i of a row
goes in the low 4 bits of byte i, element 2i + 1 in the high 4 bits (byte = low | high << 4).

Why symmetric and not asymmetric (a zero point per group, as GGUF's Q4_1)? The lab's real model was
shipped as Q4_1 with groups of 32: asymmetric int4 g32 would reproduce its weights exactly and measure
no loss at all. Symmetric int4 is a different grid, so the memory-quality table shows a real cost.
"""
from __future__ import annotations

import torch

from lab.errors import NotStarted

QMIN, QMAX = -8, 7
OFFSET = 8   # stored nibble = code + OFFSET


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit values [..., K] (uint8 in 0..15, K even) two per byte -> uint8 [..., K / 2].

    byte i = values[..., 2i] | values[..., 2i + 1] << 4 (the even element in the low nibble).
    Raises ValueError if K is odd, the dtype is not uint8, or a value exceeds 15. Returns a new tensor.
    """
    if values.dtype != torch.uint8 or values.dim() < 1 or values.shape[-1] % 2:
        raise ValueError(f"pack_int4 needs uint8 values [..., K] with K even, got {values.dtype} {list(values.shape)}")
    if values.numel() and int(values.max()) > 15:
        raise ValueError(f"4-bit values must be in 0..15, got a {int(values.max())}")
    raise NotStarted("inf24: implement pack_int4")


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_int4: uint8 [..., K / 2] -> uint8 [..., K] of values in 0..15.

    Element 2i of the result is byte i's low nibble, element 2i + 1 its high nibble. Raises ValueError
    unless packed is uint8.
    """
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed must be uint8, got {packed.dtype}")
    raise NotStarted("inf24: implement unpack_int4")


def quantize_int4(weight: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize weight [N, K] (float) to packed codes uint8 [N, K / 2] and fp16 scales [N, K / group_size].

    See the module docstring: per group, scale = fp16(max|w| / 7) (1.0 for a group of zeros), codes =
    clamp(round(w / scale), -8, 7) computed with that fp16 scale in float32, stored as code + 8, packed.
    max|w| / 7 is raised to at least 2**-14 (fp16's smallest normal) before the fp16 rounding, so that no
    scale is 0 or subnormal. Group g of row n is weight[n, g * group_size:(g + 1) * group_size].
    Raises ValueError unless weight is a 2-D float tensor and K is a multiple of group_size (even).
    """
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a 2-D float tensor [N, K], got {weight.dtype} {list(weight.shape)}")
    if group_size < 2 or group_size % 2 or weight.shape[1] % group_size:
        raise ValueError(f"group_size={group_size} must be even and divide K={weight.shape[1]}")
    raise NotStarted("inf24: implement quantize_int4")


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, group_size: int = 32,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight [N, K] that packed codes [N, K / 2] and fp16 scales [N, K / group_size] stand for:
    (nibble - 8) * scale of its group, computed in float32, returned in `dtype`."""
    raise NotStarted("inf24: implement dequantize_int4")
