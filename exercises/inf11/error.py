"""inf11 · How far are the half-precision logits from fp32's? Absolute error, KL divergence, top-1 agreement.

Logit error in absolute terms depends on the logits' scale; what matters for generation is the
next-token *distribution*. KL(p_fp32 || p_half) measures how much the half-precision model's
distribution diverges from the fp32 one, in nats per token, and top-1 agreement how often greedy
decoding would pick the same token. Both are computed in float64: a KL of 1e-5 is the difference of two
numbers near log(49,152) ~ 10.8, which float32 (7 digits) cannot resolve.
"""
from __future__ import annotations

import torch

from lab.errors import NotStarted


def logit_error(ref_logits: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """Compare logits with reference (fp32) logits of the same positions.

    ref_logits, logits: [..., vocab_size], any float dtypes, same shape; every leading index is one position.
    returns {"max_abs": max |logits - ref|, "mean_abs": mean |logits - ref| (over every element),
             "kl": mean over positions of KL(softmax(ref) || softmax(logits)) in nats,
             "top1": fraction of positions where both argmaxes agree}, as Python floats.
    Everything in float64, stable for logits in the hundreds (no exp overflow, no log of 0); neither input
    is modified. Raises ValueError if the shapes differ. Hints: README.md, "Hints".
    """
    raise NotStarted("inf11: implement logit_error")
