"""inf24 · Bytes of a model by storage format, counted exactly.

A format says how the *projections* (every nn.Linear inside the layers: q, k, v, o, gate, up, down) are
stored; what a format does not quantize stays in 16 bits:

| format | a projection [N, K] | everything else (embedding, untied head, norms) |
| --- | --- | --- |
| fp32 / fp16 / bf16 | N*K values of 4 / 2 / 2 bytes | the same dtype |
| int8 | N*K int8 codes + N fp16 scales (one per output channel) | bf16 |
| int4 | N*K/2 bytes (two 4-bit codes a byte) + N*K/group_size fp16 scales | bf16 |

Scales are stored in fp16 (`SCALE_BYTES`): 2 bytes per output channel (int8) or per group of
`group_size` consecutive weights along K (int4). A tied output head is the embedding and counts once.
"""
from __future__ import annotations

from lab.config import ModelConfig
from lab.errors import NotStarted

FORMATS = ("fp32", "fp16", "bf16", "int8", "int4")
FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
SCALE_BYTES = 2        # scales are stored as fp16
BASE_FORMAT = "bf16"   # what stays unquantized (embedding, head, norms) is stored in this when int8/int4


def check_format(fmt: str, in_features: int | None = None, group_size: int = 32) -> None:
    """ValueError unless `fmt` is one of FORMATS and, for int4, `in_features` splits into whole groups."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "int4" and (group_size < 2 or group_size % 2):
        raise ValueError(f"int4 needs an even group_size >= 2 (two codes a byte), got {group_size}")
    if fmt == "int4" and in_features is not None and in_features % group_size:
        raise ValueError(f"int4 groups of {group_size} must tile in_features={in_features}: "
                         f"pick a group size that divides it (32 and 64 divide SmolLM2's 576 and 1536)")


def linear_bytes(out_features: int, in_features: int, fmt: str, group_size: int = 32) -> int:
    """Bytes of one projection's weight [out_features, in_features] stored in `fmt`, scales included.

    Example: a [1536, 576] projection takes 1,769,472 bytes in bf16, 884,736 + 3,072 in int8 and
    442,368 + 55,296 in int4 with groups of 32. Raises ValueError for an unknown format or (int4) a
    group size that does not divide in_features (check_format, given, raises both).
    """
    check_format(fmt, in_features, group_size)
    raise NotStarted("inf24: implement linear_bytes")


def model_bytes(config: ModelConfig, fmt: str, group_size: int = 32) -> int:
    """Bytes of all of a model's stored weights when its projections are in `fmt` (see the module table).

    Per layer: q_proj [q_size, hidden], k_proj and v_proj [kv_size, hidden], o_proj [hidden, q_size],
    gate_proj and up_proj [intermediate, hidden], down_proj [hidden, intermediate], two norms [hidden].
    Then the embedding [vocab, hidden], the head (same shape, only if not tied) and the final norm.
    Projections as `linear_bytes` counts them; everything else at FLOAT_BYTES[fmt], or at
    FLOAT_BYTES[BASE_FORMAT] when fmt is int8 or int4. Returns an exact int. Raises ValueError as
    linear_bytes does (an unknown format; int4 groups that do not divide a projection's in_features).
    """
    check_format(fmt)
    raise NotStarted("inf24: implement model_bytes")
