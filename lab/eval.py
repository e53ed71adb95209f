"""Quality measures the oracles use: perplexity of a model on a text, and how far two models' logits are apart.

They accept the lab's `LlamaModel` (which returns logits) and transformers models (which return an
object with `.logits`) alike. Sums run in float64: a mean over thousands of tokens, or a KL divergence of
1e-4 between two nearly equal distributions, would otherwise lose the digits a threshold compares.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids)
    return getattr(out, "logits", out)   # transformers returns a ModelOutput, the lab's model a tensor


@torch.no_grad()
def perplexity(model, token_ids: Sequence[int] | torch.Tensor, window: int = 512, stride: int = 512) -> float:
    """exp(mean negative log-likelihood) of `token_ids` under `model`, scored window by window.

    Windows of `window` tokens start every `stride` tokens; each window sees only its own tokens and
    scores those it predicts that no earlier window scored. With `stride == window` the windows do not
    overlap and each scores its tokens 1..window-1 (its first token has no context); with a smaller
    stride every token after the first is scored, beyond the first window with `window - stride` or more
    tokens of context.
    token_ids: [num_tokens] ints, no batch dimension. Runs on the model's device, batch 1.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    if ids.numel() < 2:
        raise ValueError(f"perplexity needs at least 2 tokens, got {ids.numel()}")
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 2 and 1 <= stride <= window; got window={window}, stride={stride}")
    device = next(model.parameters()).device
    nll_sum, num_scored, scored_end = 0.0, 0, 1   # tokens [0, scored_end) are done (token 0 never is)
    for begin in range(0, ids.numel() - 1, stride):
        end = min(begin + window, ids.numel())
        if end <= scored_end:
            continue
        chunk = ids[begin:end].to(device)[None]                                   # [1, T]
        log_probs = F.log_softmax(_logits(model, chunk)[0, :-1].float(), dim=-1)  # [T-1, V]: predicts chunk[1:]
        targets = chunk[0, 1:]
        nll = -log_probs.gather(-1, targets[:, None])[:, 0]                      # [T-1]
        new = nll[max(scored_end - begin - 1, 0):]                               # tokens not yet scored
        nll_sum += new.double().sum().item()
        num_scored += new.numel()
        scored_end = end
    return math.exp(nll_sum / num_scored)


def _check_pair(ref_logits: torch.Tensor, logits: torch.Tensor) -> None:
    if ref_logits.shape != logits.shape:
        raise ValueError(f"logits must have the same shape [..., vocab_size]; got {list(ref_logits.shape)} "
                         f"(reference) and {list(logits.shape)}")


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over positions of KL(p_ref || p), in nats, computed in float64.

    ref_logits, logits: [..., vocab_size], any float dtype; every leading index is one position.
    0 means identical next-token distributions; ~1e-3 is what Q4 weight noise costs a small model.
    """
    _check_pair(ref_logits, logits)
    ref_logp = F.log_softmax(ref_logits.double(), dim=-1)
    logp = F.log_softmax(logits.double().to(ref_logits.device), dim=-1)
    per_position = (ref_logp.exp() * (ref_logp - logp)).sum(-1)                   # [...]
    return per_position.mean().item()


def top1_agreement(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Fraction of positions where both logits pick the same most likely next token.

    ref_logits, logits: [..., vocab_size]. Exact ties break toward the lower id in both.
    """
    _check_pair(ref_logits, logits)
    same = ref_logits.argmax(-1) == logits.argmax(-1).to(ref_logits.device)
    return same.double().mean().item()
