"""inf11 · Casting a model to half precision: half the bytes per weight, so half the bytes per decode step.

A batch-1 decode step reads every weight once and does ~1 FLOP per byte (inf00): its time is bytes
divided by memory bandwidth. Storing the weights in bf16 or fp16 instead of fp32 halves the bytes, and a
matmul that reads them in that dtype (cuBLAS and tensor cores on a GPU) halves the time. Weights stored
in 16 bits but multiplied in fp32 halve the memory and nothing else: the upcast writes and reads an fp32
copy of every weight at every step.

The lab model keeps what needs fp32 in fp32 whatever its dtype: RMSNorm reduces in fp32, RoPE angles are
computed from fp32 frequencies (`LlamaModel._apply` recomputes them after a cast), and every matmul
accumulates in fp32 inside the kernel.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from lab.errors import NotStarted

HALF_DTYPES = (torch.float16, torch.bfloat16)


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` whose parameters are in `dtype`, so that it computes in `dtype`.

    model: a `lab.model.LlamaModel` (or any nn.Module); it is left unchanged (the tests compare against it).
    dtype: torch.float32, torch.bfloat16 or torch.float16; anything else raises ValueError.
    returns: the copy, on the model's device, in eval mode. A weight shared by two modules (the tied
             embedding and output head) stays shared: one tensor, counted once. Buffers may keep their
             dtype (the model's only one, RoPE's frequencies, must stay fp32 anyway). Hints: README.md, "Hints".
    """
    raise NotStarted("inf11: implement cast_model")


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters, each distinct tensor counted once (a tied weight is one tensor).

    Example: SmolLM2-135M holds 134,515,008 parameters, 538,060,032 bytes in fp32 (its 49,152 x 576
    output head is the embedding, not a copy of it). Buffers are not counted.
    """
    raise NotStarted("inf11: implement weight_bytes")
