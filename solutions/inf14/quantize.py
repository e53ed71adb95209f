"""inf14 · Symmetric int8 quantization: weights per output channel, activations per token.

A float tensor is stored as int8 codes `q` and float32 scales `s`, with x ≈ q * s. "Symmetric": zero
maps to code 0 and there is no zero point. The scale of a group of values is its largest magnitude
divided by 127, so the largest value lands on ±127 and nothing clips; rounding to the nearest code then
errs by at most s / 2 per value. The smaller the group, the smaller its scale and its error:

- a weight [N, K] gets one scale per output channel (row n): a row of small weights is not rounded on the
  grid of the largest row ("per-channel"; one scale for the whole tensor is "per-tensor");
- an activation [..., K] gets one scale per token (row), computed afresh for every input ("dynamic").

Codes use [-127, 127]; -128 is never produced, so the grid is the same on both sides of zero.
"""
from __future__ import annotations

import torch

QMAX = 127   # the largest code; scale = absmax / QMAX


def _check_float(x: torch.Tensor, name: str, min_dim: int) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < min_dim:
        what = f"a {type(x).__name__}" if not isinstance(x, torch.Tensor) else f"{x.dtype} of shape {list(x.shape)}"
        raise ValueError(f"{name} must be a floating-point tensor with at least {min_dim} dimensions, got {what}")


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a weight [N, K] to int8 codes [N, K] and one float32 scale per output channel [N].

    scale[n] = max_k |weight[n, k]| / 127 (a row of zeros gets scale 1.0), computed in float32;
    q[n, k] = round(weight[n, k] / scale[n]) (round half to even, as torch.round), an int8 in [-127, 127].
    Then |weight - q * scale[:, None]| <= scale[:, None] / 2 everywhere.
    Returns new tensors (weight is not modified), on weight's device, for any floating input dtype.
    Raises ValueError unless weight is a 2-D floating-point tensor. Hints: README.md, "Hints".
    """
    _check_float(weight, "weight", 2)
    if weight.dim() != 2:
        raise ValueError(f"weight must be [out_features, in_features], got shape {list(weight.shape)}")
    # BEGIN SOLUTION
    w = weight.float()
    amax = w.abs().amax(dim=1)                                         # [N]
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale
    # END SOLUTION


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The float weight [N, K] that codes q [N, K] (int8) and scales [N] stand for: q * scale per row,
    computed in float32 and returned as a new tensor in `dtype`."""
    # BEGIN SOLUTION
    return (q.float() * scale.float()[:, None]).to(dtype)
    # END SOLUTION


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamically quantize activations x [..., K] (any leading shape): int8 codes [..., K] and one float32
    scale per token (row) [..., 1].

    scale = max |x| over the last dimension / 127 (1.0 for a row of zeros), q = round(x / scale) in
    [-127, 127], exactly as `quantize_per_channel` does for a weight's rows; the scale keeps its last
    dimension (size 1) so that `q * scale` broadcasts back to x's shape. x is not modified.
    Raises ValueError unless x is a floating-point tensor with at least 1 dimension.
    """
    _check_float(x, "x", 1)
    # BEGIN SOLUTION
    x32 = x.float()
    amax = x32.abs().amax(dim=-1, keepdim=True)                         # [..., 1]
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.round(x32 / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale
    # END SOLUTION
