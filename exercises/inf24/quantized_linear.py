"""inf24 · A projection stored in int8 or int4, computed by dequantizing on the fly.

`QuantizedLinear` holds only what `formats.linear_bytes` counts: the codes (`qweight`: int8 [N, K], or
uint8 [N, K / 2] for int4) and their fp16 `scales` ([N] for int8, [N, K / group_size] for int4). Its
forward rebuilds the weight in the activation's dtype and calls F.linear: the memory saving is in what
is *stored*; a fast kernel that never writes the float weight (inf14's GEMV, inf41's W4A16) is the speed
saving, and not this topic's concern.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import NotStarted

from .formats import check_format
from .int4 import dequantize_int4, quantize_int4


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel int8 (as in inf14), scales stored in fp16: weight [N, K] float ->
    (codes int8 [N, K] in [-127, 127], scales fp16 [N]).

    scale = fp16(max |w| of the row / 127) (1.0 for a row of zeros; max|w| / 127 raised to at least
    2**-24, fp16's smallest step, before the rounding, so that no scale is 0); codes = round(w / scale)
    with that stored fp16 scale, in float32.
    Raises ValueError unless weight is a 2-D float tensor.
    """
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a 2-D float tensor [N, K], got {weight.dtype} {list(weight.shape)}")
    raise NotStarted("inf24: implement quantize_int8")


class QuantizedLinear(nn.Module):
    """A bias-free projection stored as int8 or int4 codes with fp16 scales (buffers `qweight`, `scales`).

    fmt: "int8" (qweight int8 [N, K], scales fp16 [N]) or "int4" (qweight uint8 [N, K / 2], scales fp16
    [N, K / group_size]). forward(x [..., K]) -> [..., N] in x.dtype.
    """

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, fmt: str, in_features: int,
                 group_size: int = 32):
        super().__init__()
        if fmt not in ("int8", "int4"):
            raise ValueError(f"QuantizedLinear stores int8 or int4, got {fmt!r}")
        self.fmt, self.in_features, self.group_size = fmt, in_features, group_size
        self.out_features = qweight.shape[0]
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)

    @classmethod
    def from_linear(cls, linear: nn.Linear, fmt: str, group_size: int = 32) -> "QuantizedLinear":
        """Quantize `linear.weight` [N, K] to `fmt` ("int8": quantize_int8; "int4": quantize_int4 with
        group_size). The result holds no reference to `linear` or to autograd. Raises ValueError for a
        bias (the lab's projections have none) or another format."""
        check_format(fmt, linear.in_features, group_size)
        if linear.bias is not None:
            raise ValueError("QuantizedLinear stores bias-free projections, as the lab model's are")
        raise NotStarted("inf24: implement QuantizedLinear.from_linear")

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight [N, K] the codes stand for, in `dtype` (codes times scales, in float32 first): int8 as
        quantize_int8 stored it, int4 as quantize_int4 did (group_size of this layer)."""
        raise NotStarted("inf24: implement QuantizedLinear.dequantized_weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(x.dtype))

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.fmt == "int4" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.fmt}{group}"
