"""inf11 · Where fp16 overflows: massive activations, and a norm that survives them.

Trained transformers grow a few huge values in their residual stream, on the first token and a few
channels ("massive activations", Sun et al. 2024); attention uses them as a sink. The lab's real model
carries one of 22,000-25,000 from layer 11 on (channel 507 of the first token): up to 38% of fp16's
largest value, 65,504. fp16 holds it, but not its square: an RMSNorm that computes mean(x^2) in fp16
turns that token into inf/0 and the output into garbage. bf16 has fp32's 8 exponent bits, so nothing
overflows, at the price of 8 significant bits. This is why Llama-style code computes the norm's
statistics in fp32 whatever the model's dtype.
"""
from __future__ import annotations

import torch
from torch import nn

from lab.errors import NotStarted


@torch.inference_mode()
def residual_absmax(model: nn.Module, input_ids: torch.Tensor) -> list[float]:
    """The largest |value| of the residual stream after each decoder layer, over every token and channel.

    model:     a `lab.model.LlamaModel` (its decoder layers are `model.layers`).
    input_ids: [batch, num_tokens] int64.
    returns:   num_layers Python floats; entry i is max |output of model.layers[i]|.
    One forward of the model, unchanged in what it computes. The model must be left as it was: remove
    whatever you attach to it, even if the forward fails (its exception then reaches the caller).
    Hints: README.md, "Hints".
    """
    raise NotStarted("inf11: implement residual_absmax")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm that is safe in fp16: x / sqrt(mean(x^2) + eps) * weight, statistics in fp32.

    x:      [..., hidden] in fp32, bf16 or fp16.
    weight: [hidden], same dtype as x.
    returns [..., hidden] in x's dtype: normalized in fp32, rounded to x's dtype, then scaled by weight
            (as `lab.model.RMSNorm` does, which is what Hugging Face's Llama does too). The statistics
            must not overflow for any finite input, fp16's 65,504 included. x is not modified.
    """
    raise NotStarted("inf11: implement rms_norm")
