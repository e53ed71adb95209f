"""inf21 · MHA → GQA conversion: mean-pool the K and V heads of each group (Ainslie et al., 2023).

A checkpoint trained with n KV heads becomes one with m < n (m divides n) by replacing each run of
r = n / m consecutive KV heads by their mean, for k_proj and v_proj alike. Query head h used old KV head
h // (num_heads / n), which lies in new group h // (num_heads / m), so the query projections, o_proj and
everything else stay as they are. The
converted model is an approximation: Ainslie et al. recover the quality by further training ("uptraining",
5% of the original steps); without it the error can be large, and the lesson measures it on the real model.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig
from lab.model import LlamaModel
from lab.weights import empty_model
from lab.errors import NotStarted


def mean_pool_kv_heads(weight: torch.Tensor, num_kv_heads: int, new_num_kv_heads: int) -> torch.Tensor:
    """Pool a k_proj or v_proj weight from num_kv_heads heads to new_num_kv_heads heads by group means.

    weight:  [num_kv_heads * head_dim, hidden_size] (rows of head i are i*head_dim .. (i+1)*head_dim - 1).
    returns: a new tensor [new_num_kv_heads * head_dim, hidden_size], same dtype and device: new head j is
             the mean of old heads j*r .. j*r + r - 1, r = num_kv_heads // new_num_kv_heads; computed in
             float32 (float64 for float64) and cast back. The input is not modified.
    Raises ValueError unless weight is 2-D, new_num_kv_heads is a positive divisor of num_kv_heads and
    weight's rows are a multiple of num_kv_heads.
    """
    raise NotStarted("inf21: implement mean_pool_kv_heads")


def convert_to_gqa(model: LlamaModel, num_kv_heads: int) -> LlamaModel:
    """A new LlamaModel with `num_kv_heads` KV heads, its k_proj and v_proj mean-pooled from `model`'s.

    model:   a lab LlamaModel (its config.num_kv_heads must be a multiple of num_kv_heads); not modified.
    returns: a model with config `model.config.with_(num_kv_heads=num_kv_heads)`, same dtype and device,
             in eval mode; every other weight equal to the original's (copied; a tied embedding stays tied).
    Raises ValueError if num_kv_heads does not divide the model's KV heads (or is not a positive int).
    The lesson's hints name the lab helper that builds an empty model of a given config.
    """
    raise NotStarted("inf21: implement convert_to_gqa")
