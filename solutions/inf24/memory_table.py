"""inf24 · The memory-quality table: each storage format's bytes against what it costs the real model.

For every format: the bytes the converted model stores (scales included), its perplexity on the lab's
evaluation text, and how far its next-token distributions are from float32's: mean KL(p_fp32 || p) and
the fraction of positions where both pick the same top token. A format runs as it would be deployed:
fp16 and bf16 compute in that dtype; int8 and int4 store the projections quantized, keep the rest in
bf16 and compute in bf16.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lab.eval import kl_divergence, top1_agreement
from lab.model import LlamaModel

from .formats import BASE_FORMAT, FORMATS, check_format
from .quantized_linear import QuantizedLinear

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Row:
    """One line of the table. bytes: exact bytes of the converted model's stored tensors."""

    format: str
    bytes: int
    perplexity: float
    kl: float
    top1: float


def convert_model(model: LlamaModel, fmt: str, group_size: int = 32) -> LlamaModel:
    """A copy of `model` stored in `fmt` (the module table of `formats`); `model` is left unchanged.

    fp32/fp16/bf16: a deep copy cast to that dtype. int8/int4: a deep copy cast to BASE_FORMAT (bf16),
    with every projection replaced (`model.replace_linears`) by a `QuantizedLinear` quantized from the
    *original* float32 weight, so that the bf16 cast does not round the weights twice.
    Then `converted.weight_bytes()` equals `formats.model_bytes(model.config, fmt, group_size)`.
    Raises ValueError for an unknown format.
    """
    check_format(fmt)
    # BEGIN SOLUTION
    if fmt in DTYPES:
        return copy.deepcopy(model).to(DTYPES[fmt])
    originals = dict(model.named_modules())
    converted = copy.deepcopy(model).to(DTYPES[BASE_FORMAT])
    return converted.replace_linears(
        lambda name, linear: QuantizedLinear.from_linear(originals[name], fmt, group_size))
    # END SOLUTION


def window_logits(model: nn.Module, token_ids: list[int], window: int = 512) -> torch.Tensor:
    """Float32 logits [num_predictions, vocab] for the eval text, window by window (no overlap), each
    window's last position dropped: row j predicts the token after it, exactly the positions that
    `lab.eval.perplexity(model, token_ids, window, stride=window)` scores. Windows start at 0, window,
    2 * window, ...; a last window of one token contributes nothing. Row j's target is
    `targets_of(token_ids, window)[j]`. No autograd graph is kept.
    """
    # BEGIN SOLUTION
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    chunks = [ids[begin:begin + window] for begin in range(0, ids.numel() - 1, window)]
    with torch.inference_mode():
        return torch.cat([model(chunk[None])[0, :-1].float() for chunk in chunks if chunk.numel() > 1])
    # END SOLUTION


def targets_of(token_ids: list[int], window: int = 512) -> torch.Tensor:
    """The token each row of `window_logits` predicts: [num_predictions] int64."""
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    chunks = [ids[begin:begin + window] for begin in range(0, ids.numel() - 1, window)]
    return torch.cat([chunk[1:] for chunk in chunks if chunk.numel() > 1])


def perplexity_of(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """exp(mean negative log-likelihood) of `targets` [P] under `logits` [P, vocab], in float64."""
    nll = -F.log_softmax(logits.double(), dim=-1).gather(-1, targets[:, None])
    return math.exp(nll.mean().item())


def memory_quality_table(model: LlamaModel, token_ids: list[int], formats=FORMATS, group_size: int = 32,
                         window: int = 512) -> list[Row]:
    """One `Row` per format, in the order given, against `model` (float32) on `token_ids`.

    The float32 logits are the reference (computed once). For each format: convert_model, its window
    logits, then bytes = converted.weight_bytes(), perplexity from its logits (`perplexity_of`), kl and
    top1 against the reference (`lab.eval.kl_divergence`, `lab.eval.top1_agreement`). `model` is left
    unchanged; at most one converted copy should be alive at a time (each is a whole model).
    Raises ValueError for an unknown format, before any work.
    """
    for fmt in formats:
        check_format(fmt)
    # BEGIN SOLUTION
    reference = window_logits(model, token_ids, window)
    targets = targets_of(token_ids, window)
    rows = []
    for fmt in formats:
        converted = convert_model(model, fmt, group_size)
        logits = reference if fmt == "fp32" else window_logits(converted, token_ids, window)
        rows.append(Row(fmt, converted.weight_bytes(), perplexity_of(logits, targets),
                        kl_divergence(reference, logits), top1_agreement(reference, logits)))
        del converted
    return rows
    # END SOLUTION
