"""inf23 · RoPE scaling: stretch a model's rotary positions past the context it was trained on.

RoPE rotates each pair i of a head's dimensions (i = 0 .. head_dim/2 - 1) by the angle position * inv_freq[i],

    inv_freq[i] = rope_theta ** (-2i / head_dim),        wavelength[i] = 2 pi / inv_freq[i] tokens,

so the first pairs turn fast (wavelength ~6 tokens) and the last ones slowly (wavelength ~ rope_theta).
A model trained on L tokens has seen every angle of the fast pairs but only the first L / wavelength
of a turn of the slow ones; past L those slow pairs show angles it never saw. Every scheme here changes
inv_freq (and YaRN also the attention temperature) so that a longer context stays in familiar angles:

- linear (position interpolation): every frequency / factor, as if positions were divided by factor;
- dynamic NTK: raise rope_theta with the current length, so that the slowest pair is interpolated
  and the fastest barely changes;
- YaRN: pairs with many turns in L keep their frequency, pairs with less than one turn are
  interpolated by factor, a linear ramp between; and logits are sharpened by (0.1 ln factor + 1)^2;
- Llama 3: the same three bands chosen by wavelength against L / low_freq_factor and
  L / high_freq_factor, with a smooth blend between.

Each function follows the definitions of the papers and of the released models' configs (the
`rope_scaling` dict of a Hugging Face config.json), so a config written for transformers gives the
same frequencies here.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from lab.config import ModelConfig
from lab.model import LlamaModel

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
# The keys each rope_type needs in `rope_scaling` (beyond rope_type itself); YaRN's betas are optional.
REQUIRED_KEYS = {"default": (), "linear": ("factor",), "dynamic": ("factor",),
                 "yarn": ("factor", "original_max_position_embeddings"),
                 "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def _check_common(head_dim: int, rope_theta: float) -> None:
    # Not in a solution region: the stubs keep these checks so a student's error messages match.
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even number (RoPE rotates pairs), got {head_dim}")
    if not rope_theta > 1:
        raise ValueError(f"rope_theta must be > 1, got {rope_theta}")


def _check_factor(factor: float) -> None:
    if not factor >= 1:
        raise ValueError(f"a scaling factor must be >= 1 (1 = no scaling), got {factor}")


def default_inv_freq(head_dim: int, rope_theta: float) -> torch.Tensor:
    """Plain RoPE: inv_freq[i] = rope_theta ** (-2i / head_dim) for i = 0 .. head_dim/2 - 1.

    head_dim: even; rope_theta: > 1. Returns float64 [head_dim // 2], decreasing from 1.
    Raises ValueError for an odd or non-positive head_dim or rope_theta <= 1.
    """
    _check_common(head_dim, rope_theta)
    # BEGIN SOLUTION
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim      # [head_dim/2]
    return rope_theta ** -exponents
    # END SOLUTION


def linear_inv_freq(head_dim: int, rope_theta: float, factor: float) -> torch.Tensor:
    """Position interpolation (Chen et al. 2023): every frequency divided by `factor` (>= 1).

    Returns float64 [head_dim // 2]. Position p then turns as far as position p / factor did.
    """
    _check_common(head_dim, rope_theta)
    _check_factor(factor)
    # BEGIN SOLUTION
    return default_inv_freq(head_dim, rope_theta) / factor
    # END SOLUTION


def dynamic_ntk_inv_freq(head_dim: int, rope_theta: float, factor: float, max_position_embeddings: int,
                         seq_len: int | None = None) -> torch.Tensor:
    """Dynamic NTK-aware scaling: plain RoPE with a larger base that grows with the sequence length.

    With L = max_position_embeddings and n = max(seq_len, L) (seq_len None means L):
        base = rope_theta * (factor * n / L - (factor - 1)) ** (head_dim / (head_dim - 2))
    so up to L nothing changes. Returns float64 [head_dim // 2].
    """
    _check_common(head_dim, rope_theta)
    _check_factor(factor)
    if max_position_embeddings <= 0 or head_dim < 4:
        raise ValueError(f"dynamic NTK needs max_position_embeddings > 0 and head_dim >= 4, got "
                         f"{max_position_embeddings} and {head_dim}")
    # BEGIN SOLUTION
    n = max(seq_len or max_position_embeddings, max_position_embeddings)
    base = rope_theta * (factor * n / max_position_embeddings - (factor - 1)) ** (head_dim / (head_dim - 2))
    return default_inv_freq(head_dim, base)
    # END SOLUTION


def yarn_attention_factor(factor: float) -> float:
    """YaRN's attention temperature: 0.1 * ln(factor) + 1 (1 for factor <= 1).

    It multiplies cos and sin of the rotation, so q.k logits grow by its square: longer contexts spread
    attention thinner, and this sharpens it back (YaRN paper, eq. 22).
    """
    # BEGIN SOLUTION
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0
    # END SOLUTION


def yarn_inv_freq(head_dim: int, rope_theta: float, factor: float, original_max_position_embeddings: int,
                  beta_fast: float = 32.0, beta_slow: float = 1.0) -> torch.Tensor:
    """YaRN's frequencies (Peng et al. 2023): keep the fast pairs, interpolate the slow ones, ramp between.

    With L = original_max_position_embeddings, pair index d (0 .. head_dim/2 - 1) turns L * inv_freq[d] / 2pi
    times over L tokens. The dimension (in head_dim units) that turns r times is
        dim(r) = head_dim * ln(L / (2 pi r)) / (2 ln rope_theta);
    low = max(floor(dim(beta_fast)), 0), high = min(ceil(dim(beta_slow)), head_dim - 1) (high += 0.001 if
    equal), ramp[d] = clamp((d - low) / (high - low), 0, 1) and
        inv_freq[d] = plain[d] * (1 - ramp[d]) + plain[d] / factor * ramp[d].
    Returns float64 [head_dim // 2]. The attention factor is `yarn_attention_factor(factor)`.
    """
    _check_common(head_dim, rope_theta)
    _check_factor(factor)
    if original_max_position_embeddings <= 0 or not beta_fast > beta_slow > 0:
        raise ValueError(f"YaRN needs original_max_position_embeddings > 0 and beta_fast > beta_slow > 0, got "
                         f"{original_max_position_embeddings}, beta_fast={beta_fast}, beta_slow={beta_slow}")
    # BEGIN SOLUTION
    def dim_turning(num_turns: float) -> float:
        return head_dim * math.log(original_max_position_embeddings / (num_turns * 2 * math.pi)) / (
            2 * math.log(rope_theta))

    low = max(math.floor(dim_turning(beta_fast)), 0)
    high = min(math.ceil(dim_turning(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001                                             # a ramp of zero width would divide by 0
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    plain = default_inv_freq(head_dim, rope_theta)
    return plain * (1 - ramp) + plain / factor * ramp
    # END SOLUTION


def llama3_inv_freq(head_dim: int, rope_theta: float, factor: float, low_freq_factor: float,
                    high_freq_factor: float, original_max_position_embeddings: int) -> torch.Tensor:
    """Llama 3.1's frequencies: three bands by wavelength against L = original_max_position_embeddings.

    wavelength < L / high_freq_factor: unchanged; wavelength > L / low_freq_factor: divided by factor;
    between: a blend (1 - s) * plain / factor + s * plain with s = (L / wavelength - low_freq_factor) /
    (high_freq_factor - low_freq_factor). Returns float64 [head_dim // 2].
    """
    _check_common(head_dim, rope_theta)
    _check_factor(factor)
    if not high_freq_factor > low_freq_factor > 0 or original_max_position_embeddings <= 0:
        raise ValueError(f"llama3 scaling needs high_freq_factor > low_freq_factor > 0 and "
                         f"original_max_position_embeddings > 0, got {high_freq_factor}, {low_freq_factor}, "
                         f"{original_max_position_embeddings}")
    # BEGIN SOLUTION
    plain = default_inv_freq(head_dim, rope_theta)
    wavelength = 2 * math.pi / plain
    old_len = original_max_position_embeddings
    smooth = (old_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)   # 0 at the long end
    blended = (1 - smooth) * plain / factor + smooth * plain
    out = torch.where(wavelength > old_len / low_freq_factor, plain / factor, plain)
    is_medium = (wavelength >= old_len / high_freq_factor) & (wavelength <= old_len / low_freq_factor)
    return torch.where(is_medium, blended, out)
    # END SOLUTION


def rope_parameters(config: ModelConfig, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """The inverse frequencies and attention factor of a config's RoPE, as a released config.json defines them.

    config.rope_scaling: None (plain RoPE) or a dict with "rope_type" (or the older key "type"; neither
    means "default") in ROPE_TYPES and that type's keys (REQUIRED_KEYS; YaRN may add beta_fast, beta_slow,
    attention_factor: absent or None means 32.0, 1.0 and yarn_attention_factor(factor)).
    "dynamic" uses config.max_position_embeddings as its trained length.
    seq_len: the current sequence length, used only by "dynamic" (None = max_position_embeddings).
    Returns (inv_freq float32 [head_dim // 2], attention_factor): attention_factor is YaRN's (or the
    config's "attention_factor" if given) and 1.0 for every other type.
    Raises ValueError naming the type and key for an unknown rope_type or a missing key.
    """
    # BEGIN SOLUTION
    scaling = dict(config.rope_scaling or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ValueError(f"unknown rope_type {kind!r}; this lab knows {', '.join(ROPE_TYPES)}")
    missing = [key for key in REQUIRED_KEYS[kind] if key not in scaling]
    if missing:
        raise ValueError(f"rope_type {kind!r} needs rope_scaling keys {missing}, got {sorted(scaling)}")
    d, theta = config.head_dim, config.rope_theta
    attention_factor = 1.0
    if kind == "default":
        inv_freq = default_inv_freq(d, theta)
    elif kind == "linear":
        inv_freq = linear_inv_freq(d, theta, scaling["factor"])
    elif kind == "dynamic":
        inv_freq = dynamic_ntk_inv_freq(d, theta, scaling["factor"], config.max_position_embeddings, seq_len)
    elif kind == "yarn":
        inv_freq = yarn_inv_freq(d, theta, scaling["factor"], scaling["original_max_position_embeddings"],
                                 scaling.get("beta_fast") or 32.0, scaling.get("beta_slow") or 1.0)
        attention_factor = scaling.get("attention_factor") or yarn_attention_factor(scaling["factor"])
    else:
        inv_freq = llama3_inv_freq(d, theta, scaling["factor"], scaling["low_freq_factor"],
                                   scaling["high_freq_factor"], scaling["original_max_position_embeddings"])
    return inv_freq.float(), float(attention_factor)
    # END SOLUTION


def use_scaled_rope(model: LlamaModel, rope_scaling: dict | None, seq_len: int | None = None) -> LlamaModel:
    """Make the lab model run with `rope_scaling` (a dict as in `rope_parameters`) instead of its own RoPE.

    Replaces `model.inv_freq` (float32, on the model's device) by the scaled frequencies of
    `model.config` with this rope_scaling, and, when the attention factor f is not 1, wraps
    `model.attention` so every attention logit is multiplied by f ** 2 (what multiplying cos and sin by f
    does to q.k). Modifies `model` in place and returns it. Call it after moving the model (`.to()`
    recomputes model.inv_freq) and call it once only (each call wraps the attention again).
    The lesson's hints say how to rescale the logits without touching the attention function's code.
    """
    # BEGIN SOLUTION
    inv_freq, factor = rope_parameters(model.config.with_(rope_scaling=rope_scaling), seq_len)
    model.inv_freq = inv_freq.to(model.inv_freq.device)
    if factor != 1.0:
        inner: Callable = model.attention
        model.attention = lambda q, k, v, mask: inner(q * factor ** 2, k, v, mask)
    return model
    # END SOLUTION
