"""inf00 · Inference basics: FLOPs, bytes and arithmetic intensity of prefill and decode.

Conventions (the tests count the lab model's real work the same way):
- A matmul of [m, k] by [k, n] costs 2*m*k*n FLOPs. Norms, RoPE, softmax and activations are left out:
  they are under 1% of the total.
- The output head runs on every new token (as `model(ids)` does), and attention is counted dense, as a
  kernel computes it: each new token scores against every key slot it is given (QK^T) and mixes as many
  values (PV), 2 * 2 * num_heads * head_dim FLOPs per (token, key) pair per layer.
- Bytes are the fewest a step must move through memory: every weight it multiplies by once (the
  projections, the output head and the norms), the KV cache read once per sequence, and the new tokens'
  K and V written once. Activations and the few embedding rows looked up are left out (well under 1%).
"""
from __future__ import annotations

from lab.config import ModelConfig


def matmul_params(config: ModelConfig) -> int:
    """Weights that take part in a matmul for every token: every layer's projections and the output head.

    The embedding table is only indexed (one row per token), so it counts here only as the output head
    when the two are tied. Norm weights are not matmul weights. Example: SmolLM2-135M has 134,515,008
    parameters, of which 134,479,872 are matmul weights. Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    h, f = config.hidden_size, config.intermediate_size
    attention = h * (config.q_size + 2 * config.kv_size) + config.q_size * h
    mlp = 3 * h * f
    return config.num_layers * (attention + mlp) + config.vocab_size * h
    # END SOLUTION


def forward_flops(config: ModelConfig, num_tokens: int, past_len: int = 0, batch: int = 1) -> int:
    """FLOPs of one forward pass over `num_tokens` new tokens per sequence, `past_len` tokens cached.

    Prefill of a prompt of length T: forward_flops(c, T). One decode step at context S (S tokens already
    cached): forward_flops(c, 1, past_len=S). Each new token attends to past_len + num_tokens key slots
    (dense, as the module docstring counts it). `batch` sequences, each of this shape: the total of all.
    """
    # BEGIN SOLUTION
    keys = past_len + num_tokens
    linear = 2 * num_tokens * matmul_params(config)
    attention = config.num_layers * 4 * num_tokens * keys * config.num_heads * config.head_dim
    return batch * (linear + attention)
    # END SOLUTION


def weight_bytes(config: ModelConfig, dtype_bytes: int) -> int:
    """Bytes of all the model's parameters at `dtype_bytes` per value (a tied embedding counted once)."""
    # BEGIN SOLUTION
    return config.num_params() * dtype_bytes
    # END SOLUTION


def kv_cache_bytes(config: ModelConfig, seq_len: int, batch: int = 1, dtype_bytes: int = 2) -> int:
    """Bytes of the K and V of `seq_len` tokens for every layer and KV head, for `batch` sequences.

    Only the KV heads are stored (grouped-query attention: num_kv_heads, not num_heads), a head_dim vector
    each, at `dtype_bytes` per value.
    """
    # BEGIN SOLUTION
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * seq_len * batch * dtype_bytes
    # END SOLUTION


def decode_step_bytes(config: ModelConfig, past_len: int, batch: int = 1, dtype_bytes: int = 2) -> int:
    """The fewest bytes one decode step moves: the matmul weights and the norms once, each sequence's
    cached K/V of `past_len` tokens read once, and each sequence's new K/V written once.

    All at `dtype_bytes` per value. The norms are every RMSNorm weight vector of the model (lab.model).
    """
    # BEGIN SOLUTION
    return _streamed_weight_bytes(config, dtype_bytes) + kv_cache_bytes(config, past_len + 1, batch, dtype_bytes)
    # END SOLUTION


def prefill_bytes(config: ModelConfig, prompt_len: int, batch: int = 1, dtype_bytes: int = 2) -> int:
    """The fewest bytes a prefill of `prompt_len` tokens moves: the matmul weights and the norms once,
    and all prompt K/V written once."""
    # BEGIN SOLUTION
    return _streamed_weight_bytes(config, dtype_bytes) + kv_cache_bytes(config, prompt_len, batch, dtype_bytes)
    # END SOLUTION


# BEGIN SOLUTION
def _streamed_weight_bytes(config: ModelConfig, dtype_bytes: int) -> int:
    norms = (2 * config.num_layers + 1) * config.hidden_size
    return (matmul_params(config) + norms) * dtype_bytes
# END SOLUTION


def arithmetic_intensity(flops: int, num_bytes: int) -> float:
    """FLOPs per byte moved (a float). Below the device's ridge (peak FLOP/s / peak bytes/s) work is
    memory-bound. Raises ValueError when num_bytes is not positive."""
    # BEGIN SOLUTION
    if num_bytes <= 0:
        raise ValueError(f"num_bytes must be positive, got {num_bytes}")
    return flops / num_bytes
    # END SOLUTION
