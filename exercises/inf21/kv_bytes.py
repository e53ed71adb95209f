"""inf21 · KV-cache bytes: what sharing K/V heads saves, per token and for a whole cache.

Every token a model has seen leaves, in every layer, one key and one value vector per KV head:

    bytes per token = 2 (K and V) * num_layers * num_kv_heads * head_dim * bytes per value

Multi-head attention (MHA) has num_kv_heads = num_heads; grouped-query attention (GQA) shares each KV
head among num_heads // num_kv_heads query heads; multi-query attention (MQA) keeps one KV head. The
query heads, the weights and the FLOPs stay; only the cache (and the bytes a decode step reads) shrink.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig
from lab.errors import NotStarted


def _element_size(dtype: torch.dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype such as torch.bfloat16, got {dtype!r}")
    return torch.empty(0, dtype=dtype).element_size()


def kv_bytes_per_token(config: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of K and V that one token adds to the cache, summed over all layers, as an exact int.

    config: the model's shape (num_layers, num_kv_heads, head_dim); dtype: of the cached values.
    Example: Llama-3-8B (32 layers, 8 KV heads of 128) in bf16: 131,072 bytes (128 KiB).
    Raises ValueError if dtype is not a torch.dtype (`_element_size` above, given, says so and gives the
    bytes of one value).
    """
    raise NotStarted("inf21: implement kv_bytes_per_token")


def kv_cache_bytes(config: ModelConfig, batch: int, seq_len: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of a KV cache holding `seq_len` tokens for each of `batch` sequences (exact int).

    Raises ValueError unless batch and seq_len are positive ints.
    """
    raise NotStarted("inf21: implement kv_cache_bytes")
