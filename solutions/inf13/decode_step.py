"""inf13 · torch.compile: a decode step over a static KV cache, compiled once and replayed.

At batch 1 a decode step launches hundreds of small kernels (norms, RoPE, projections, attention) whose
GPU work takes microseconds each: the Python that launches them is the bottleneck. `torch.compile` traces
the step into one graph and fuses it into fewer kernels; mode="reduce-overhead" also records the
graph's kernels once as a CUDA graph and replays them with one launch. Both need a step whose shapes
and Python numbers never change: the cache is preallocated (lab.cache.StaticCache), the position is a
*tensor* (`cache_position`), and attention runs over every cache slot with a mask hiding the later ones.
"""
from __future__ import annotations

from typing import Callable

import torch

from lab.cache import StaticCache
from lab.model import LlamaModel

# step(token_ids [B, 1] int64, cache_position [1] int64) -> logits [B, vocab_size]
DecodeStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def make_decode_step(model: LlamaModel, cache: StaticCache) -> DecodeStep:
    """A decode step for `model` over `cache`, written so that torch.compile captures it whole, once.

    Returns step(token_ids, cache_position) -> logits:
      token_ids       [B, 1] int64, the newest token of each of the cache's B sequences;
      cache_position  [1] int64 tensor on the model's device: the slot (= position) the token goes in;
      logits          [B, vocab_size] in the model's dtype, for the token after it.
    The step writes the token's K/V into `cache` in place at slot cache_position (lab.model's static
    mode), so nothing in it depends on a Python number that changes from step to step, and it keeps no
    gradient. CUDA graphs replay fixed memory addresses: the cache's buffers (`cache.k`, `cache.v`) must
    be known to the compiler as static addresses, or every replay copies them.
    Raises ValueError if `cache` is not a static cache (one with `max_len`). Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if not hasattr(cache, "max_len"):
        raise ValueError(f"make_decode_step needs a static cache such as lab.cache.StaticCache (one with "
                         f"max_len), got {type(cache).__name__}")
    for buffer in list(getattr(cache, "k", [])) + list(getattr(cache, "v", [])):
        torch._dynamo.mark_static_address(buffer)      # the CUDA graph writes into them where they are

    def step(token_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(token_ids, cache=cache, cache_position=cache_position, last_only=True)[:, -1]

    return step
    # END SOLUTION


def compile_decode_step(step: DecodeStep, mode: str = "default") -> DecodeStep:
    """`step` compiled with torch.compile in `mode` (one of COMPILE_MODES), as a single graph.

    "default" fuses kernels with Inductor; "reduce-overhead" adds CUDA graphs (GPU only: on a CPU it is
    the same as "default"); "max-autotune" also benchmarks kernel variants (slow to compile).
    The whole step must compile as one graph, so that a graph break raises an error you see rather than
    running a silent slow path, with static shapes: every call has the same shapes, nothing symbolic.
    Compilation is lazy: it happens on the first call, not here.
    Raises ValueError for an unknown mode. Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if mode not in COMPILE_MODES:
        raise ValueError(f"mode must be one of {COMPILE_MODES}, got {mode!r}")
    return torch.compile(step, mode=mode, fullgraph=True, dynamic=False)
    # END SOLUTION


def greedy_decode(step: DecodeStep, token_ids: torch.Tensor, start_position: int, num_steps: int) -> torch.Tensor:
    """Greedy decoding with `step` (compiled or not): `num_steps` new tokens per sequence.

    token_ids:      [B, 1] int64, the last known token of each sequence (e.g. the argmax after the
                    prefill), to be written at slot `start_position`; slots before it must hold the prompt.
    start_position: a Python int >= 0; step i (from 0) writes at slot start_position + i.
    Returns the new tokens [B, num_steps] int64 on the same device: the argmax of each step's logits,
    each fed to the next step.
    Keep everything on the device: a `.item()` or `.tolist()` per step makes the host wait for the GPU
    every token. Advance the position as a tensor (a new Python int each step would be a new constant
    for the compiler).
    num_steps=0 returns an empty [B, 0] tensor. Raises ValueError if token_ids is not [B, 1], or
    start_position or num_steps is negative. Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if token_ids.dim() != 2 or token_ids.shape[1] != 1:
        raise ValueError(f"token_ids must be [batch, 1], got shape {list(token_ids.shape)}")
    if start_position < 0 or num_steps < 0:
        raise ValueError(f"start_position and num_steps must be >= 0, got {start_position} and {num_steps}")
    cache_position = torch.tensor([start_position], dtype=torch.long, device=token_ids.device)
    new_ids = []
    for _ in range(num_steps):
        token_ids = step(token_ids, cache_position).argmax(-1, keepdim=True)   # [B, 1], a fresh tensor
        new_ids.append(token_ids)
        cache_position = cache_position + 1
    if not new_ids:
        return token_ids.new_empty(token_ids.shape[0], 0)
    return torch.cat(new_ids, dim=1)
    # END SOLUTION
