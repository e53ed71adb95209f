"""inf14 · LLM.int8(): int8 matmul for the regular features, 16/32-bit for the few outlier features.

Past ~6.7B parameters, a handful of hidden features (columns of the activation x) carry magnitudes of
20-60 while the rest stay below ~3 (Dettmers et al., 2022). One such value in a token sets that token's
per-token scale, and the token's other features lose almost all their codes. LLM.int8() splits the
matmul by columns instead:

    outlier columns  = every k where some token has |x[m, k]| >= threshold (6.0 by default)
    y = int8 W8A8 matmul over the other columns  +  x[:, outliers] @ w[:, outliers].T in float

The float part is small (~0.1% of the columns in large models) and exact up to float rounding, and the
int8 part no longer sees the outliers. This is what `bitsandbytes.nn.Linear8bitLt(threshold=6.0)` does;
with int8-only weights (`has_fp16_weights=False`) the float part uses the dequantized weight columns.
"""
from __future__ import annotations

import torch

from .int8_matmul import w8a8_matmul
from .quantize import dequantize_per_channel, quantize_per_token


def outlier_columns(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """The columns k of x [M, K] where any token has |x[m, k]| >= threshold, as sorted int64 indices.

    Returns a 1-D int64 tensor, ascending, without repeats (empty when there is none), on x's device.
    Raises ValueError unless x is 2-D.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [num_tokens, in_features], got shape {list(x.shape)}")
    # BEGIN SOLUTION
    return torch.nonzero((x.abs() >= threshold).any(dim=0)).flatten()
    # END SOLUTION


def llm_int8_matmul(x: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """y ≈ x @ w.T by LLM.int8()'s decomposition. x: [M, K] float; wq: [N, K] int8 and w_scale: [N] float32
    (the weight quantized per channel); returns a new [M, N] tensor in x.dtype; x is never modified.

    y = (the W8A8 product over the regular columns: x with its outlier columns (`outlier_columns(x,
    threshold)`) treated as 0, quantized per token, so no outlier sets a token's scale; `w8a8_matmul`'s
    result in float32) + (x's outlier columns times the dequantized weight columns wq[:, cols], in float32),
    summed in float32 and cast once to x.dtype. With no outlier column this is exactly the W8A8 matmul.
    Raises ValueError unless x is [M, K] and wq [N, K] with the same K. Hints: README.md, "Hints".
    """
    if x.dim() != 2 or wq.dim() != 2 or x.shape[1] != wq.shape[1]:
        raise ValueError(f"need x [M, K] and wq [N, K] with the same K; got {list(x.shape)} and {list(wq.shape)}")
    # BEGIN SOLUTION
    cols = outlier_columns(x, threshold)
    regular = x.clone()
    regular[:, cols] = 0
    xq, x_scale = quantize_per_token(regular)
    out = w8a8_matmul(xq, x_scale, wq, w_scale, out_dtype=torch.float32)
    if cols.numel():
        w_outliers = dequantize_per_channel(wq[:, cols], w_scale)                   # [N, num_outliers]
        out += x[:, cols].float() @ w_outliers.t()
    return out.to(x.dtype)
    # END SOLUTION
