"""How lab.decode_bench's compiled lab variants rewrite the model for a batch-1 decode step, each swap in place:

  MulSumLinear          lab-gemv, lab-fused: y = x W^T as a multiply-and-sum that Inductor turns into one reduction
  use_triton_gemv       lab-triton: every projection and the LM head a tuned Triton GEMV (docs/perf/gemv_kernel.py)
  use_decode_attention  lab-triton-attn: each layer's RoPE, cache write and attention in one Triton launch
                        (docs/perf/decode_attention.py)
  use_fused_layers      lab-triton-fused: RMSNorms, residual adds and silu(gate) * up inside the layer's GEMVs

The Triton kernels live in docs/perf, out of the student release: in a student's checkout the Triton variants say
that the file is not there. tests/test_gemv.py and tests/test_decode_attention.py test these swaps on a CPU
through the Triton interpreter.
"""
from __future__ import annotations

import importlib.util
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lab.paths import REPO_ROOT

class MulSumLinear(nn.Module):
    """y = x W^T for a single token as (x * W).sum(-1), which Inductor fuses into one reduction kernel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight                                     # shared, not copied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != x.shape[-1]:                                    # a prefill: a matmul is the right tool
            return F.linear(x, self.weight)
        return (x.unsqueeze(-2).float() * self.weight.float()).sum(-1).to(x.dtype)   # [..., N]


GEMV_KERNEL = REPO_ROOT / "docs" / "perf" / "gemv_kernel.py"      # not in the student release
ATTENTION_KERNEL = REPO_ROOT / "docs" / "perf" / "decode_attention.py"      # nor this


def perf_module(path):
    """A kernel file of docs/perf (not a package, and not in the student release) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(REPO_ROOT)} is not here (it is not in the student release)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_GEMV_OPS: dict[Callable, Callable] = {}


def gemv_op(gemv: Callable) -> Callable:
    """`gemv` as a torch custom operator (`lab_bench::gemv`): torch.compile sees one opaque op with a known
    output shape instead of tracing into Triton's launcher, and CUDA graphs capture its launch."""
    if gemv not in _GEMV_OPS:
        # `counters` (reduce="last"'s row-block counters) are counted up and set back to zero within a call:
        # unchanged between calls, so not declared mutated (which would make compile copy them every step)
        @torch.library.custom_op(f"lab_bench::gemv_{len(_GEMV_OPS)}", mutates_args=())
        def op(weight: torch.Tensor, x: torch.Tensor, counters: torch.Tensor, block_n: int, block_k: int,
               split_k: int, num_warps: int, num_stages: int, reduce: str, norm_weight: torch.Tensor | None = None,
               eps: float = 1e-5, silu_mul: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
            return gemv(weight, x, block_n=block_n, block_k=block_k, split_k=split_k, num_warps=num_warps,
                        num_stages=num_stages, reduce=reduce, counters=counters, norm_weight=norm_weight, eps=eps,
                        silu_mul=silu_mul, residual=residual)

        @op.register_fake
        def _(weight, x, counters, block_n, block_k, split_k, num_warps, num_stages, reduce, norm_weight=None,
              eps=1e-5, silu_mul=False, residual=None):
            return x.new_empty(weight.shape[0])
        _GEMV_OPS[gemv] = op
    return _GEMV_OPS[gemv]


class TritonGemvLinear(nn.Module):
    """y = x W^T for a single token by a Triton GEMV (`gemv_op`) with a fixed launch configuration (`config`);
    `kernel` is docs/perf/gemv_kernel.py as a module, whose reduce="last" counters the layer keeps."""

    def __init__(self, weight: torch.Tensor, kernel, config: dict):
        super().__init__()
        self.weight, self.op, self.config = weight, gemv_op(kernel.gemv), config    # config: every gemv keyword
        self.register_buffer("counters", kernel.counters_for(weight.shape[0], config["block_n"], weight.device),
                             persistent=False)       # never in a state_dict (hf_llama builds from one)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != x.shape[-1]:                                    # a prefill
            return F.linear(x, self.weight)
        return self.fused(x.reshape(-1)).view(*x.shape[:-1], -1)

    def fused(self, x: torch.Tensor, norm: nn.Module | None = None, silu_mul: bool = False,
              residual: torch.Tensor | None = None) -> torch.Tensor:
        """One token's y [N] from x [K] (or [2K], gate then up, with `silu_mul`), with `norm` (an RMSNorm) applied
        to x first and `residual` [N] added after, inside the one kernel (gemv_kernel.gemv's fused forms)."""
        c = self.config
        return self.op(self.weight, x, self.counters, c["block_n"], c["block_k"], c["split_k"], c["num_warps"],
                       c["num_stages"], c["reduce"], None if norm is None else norm.weight,
                       1e-5 if norm is None else norm.eps, silu_mul, residual)


def tune_gemv(kernel, weight: torch.Tensor) -> tuple[dict, float]:
    """The fastest of `kernel.configs` (docs/perf/gemv_kernel.py's quick grid) for this weight that computes it
    right, and its seconds (`kernel.time_configs`: do_bench, L2 flushed between calls)."""
    x = torch.randn(weight.shape[1], device=weight.device, dtype=weight.dtype)
    timed = kernel.time_configs(weight, x, kernel.configs(weight.shape[0]))
    if not timed:
        raise RuntimeError(f"no launch configuration of the Triton GEMV ran right for a {list(weight.shape)} weight")
    config, ms = timed[0]
    return config, ms / 1e3


def use_triton_gemv(model, bandwidth: float) -> None:
    """lab-triton: fuse the projections (unless lab-fused did), then put a tuned Triton GEMV in place of every
    projection (a linear, or lab-fused's MulSumLinear) and of the LM head, one tuning per matrix shape (each
    printed as a fraction of `bandwidth`, the copy bandwidth in bytes/s measured for the run)."""
    module = perf_module(GEMV_KERNEL)
    if not hasattr(model.layers[0].self_attn, "qkv_proj"):
        model.fuse_projections()
    tuned: dict[tuple[int, int], dict] = {}

    def swap(weight: torch.Tensor) -> TritonGemvLinear:
        shape = (int(weight.shape[0]), int(weight.shape[1]))
        if shape not in tuned:
            config, seconds = tune_gemv(module, weight)
            tuned[shape] = config
            gbs = weight.numel() * weight.element_size() / seconds / 1e9
            print(f"  lab-triton: N={shape[0]} K={shape[1]}: {config}, {seconds * 1e6:.1f} us = {gbs:,.0f} GB/s "
                  f"({gbs * 1e9 / bandwidth:.0%} of copy)", flush=True)
        return TritonGemvLinear(weight, module, tuned[shape])

    model.replace_linears(lambda _, projection: swap(projection.weight), kinds=(nn.Linear, MulSumLinear))
    model.lm_head = swap(model.lm_head.weight)


def use_fused_layers(model) -> None:
    """lab-triton-fused: every layer of a model whose projections are TritonGemvLinear (use_triton_gemv) decodes a
    token in four GEMV kernels that also do its neighbours' work: the input RMSNorm inside qkv, the residual add
    inside o, the post-attention RMSNorm inside gate-up, silu(gate) * up and the residual add inside down (a
    prefill runs the layer's own forward). About three kernels a layer fewer than lab-triton; lab.decode_bench
    puts the attention kernel in first (use_decode_attention), so lab-triton-fused is lab-triton-attn plus these."""
    for layer in model.layers:
        layer.forward = _fused_layer_forward(layer, layer.forward)


def _fused_layer_forward(layer, original: Callable) -> Callable:
    attn, mlp = layer.self_attn, layer.mlp
    sizes = (attn.config.q_size, attn.config.kv_size, attn.config.kv_size)

    def forward(x, cos, sin, mask, cache, attention, cache_position=None):
        if x.shape[0] * x.shape[1] != 1:                                # a prefill, or a batch
            return original(x, cos, sin, mask, cache, attention, cache_position)
        h = x.reshape(-1)
        q, k, v = attn.qkv_proj.fused(h, norm=layer.input_layernorm).view(1, 1, -1).split(sizes, dim=-1)
        out = attn.attend(q, k, v, cos, sin, mask, cache, attention, cache_position)
        h = attn.o_proj.fused(out.reshape(-1), residual=h)
        gate_up = mlp.gate_up_proj.fused(h, norm=layer.post_attention_layernorm)
        return mlp.down_proj.fused(gate_up, silu_mul=True, residual=h).view_as(x)
    return forward


_ATTENTION_OPS: dict[Callable, Callable] = {}


def attention_op(kernel: Callable) -> Callable:
    """docs/perf/decode_attention.py's `rope_cache_attend` as a torch custom operator (`lab_bench::attend`),
    declared to write the layer's two cache buffers (compile orders it after their last read)."""
    if kernel not in _ATTENTION_OPS:
        @torch.library.custom_op(f"lab_bench::attend_{len(_ATTENTION_OPS)}", mutates_args=("k_cache", "v_cache"))
        def op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, k_cache: torch.Tensor,
               v_cache: torch.Tensor, position: torch.Tensor, block_s: int, num_warps: int,
               num_stages: int) -> torch.Tensor:
            return kernel(q, k, v, inv_freq, k_cache, v_cache, position, block_s=block_s, num_warps=num_warps,
                          num_stages=num_stages)

        @op.register_fake
        def _(q, k, v, inv_freq, k_cache, v_cache, position, block_s, num_warps, num_stages):
            return torch.empty_like(q)
        _ATTENTION_OPS[kernel] = op
    return _ATTENTION_OPS[kernel]


def use_decode_attention(model, tune_at: tuple[int, int] | None = None) -> None:
    """lab-triton-attn: each layer's `attend` for one decode token in a static cache (lab.decode_bench's step: batch
    1, no padding, positions = cache_position) becomes one launch of docs/perf/decode_attention.py's kernel: RoPE
    on q and k (the angles from the model's inv_freq), the cache write and attention, where compiled lab.model runs
    four kernels (RoPE with the write, two around cuDNN's attention, cuDNN's). Anything else (a prefill, a batch, a
    dynamic cache) runs the layer's own `attend`. With `tune_at` = (max_len, position) the kernel's tile, warps and
    stages are first tuned for a layer's cache of that length written at that position (each configuration
    checked against the reference on this device, then timed; the times printed), else the kernel's defaults."""
    module = perf_module(ATTENTION_KERNEL)
    config = dict(block_s=64, num_warps=4, num_stages=2)
    if tune_at is not None:
        config = tune_decode_attention(module, model, *tune_at)
    op = attention_op(module.rope_cache_attend)
    for layer in model.layers:
        layer.self_attn.attend = _kernel_attend(model, layer.self_attn, op, config)


def tune_decode_attention(module, model, max_len: int, position: int) -> dict:
    """The fastest of decode_attention's configurations that computes right on this device (time_configs), for one
    layer of `model` with a cache of `max_len` slots written at `position`; each printed with its time."""
    c, weight = model.config, model.embed_tokens.weight
    gen = torch.Generator(device=weight.device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, device=weight.device, dtype=weight.dtype)
    lines: list[str] = []
    cache = (1, c.num_kv_heads, max_len, c.head_dim)
    timed = module.time_configs(rand(c.q_size), rand(c.kv_size), rand(c.kv_size), model.inv_freq, rand(*cache),
                                rand(*cache), torch.tensor([position], device=weight.device), module.configs(),
                                say=lines.append)
    for line in lines:
        print(f"  lab-triton-attn: {line}", flush=True)
    if not timed:
        raise RuntimeError("no configuration of the decode attention kernel ran right on this device")
    for config, ms in timed[:3]:
        print(f"  lab-triton-attn: {config}: {ms * 1e3:.1f} us a layer ({max_len} slots, position {position})"
              f"{'  <- used' if config is timed[0][0] else ''}", flush=True)
    print(f"  lab-triton-attn: slowest {timed[-1][0]}: {timed[-1][1] * 1e3:.1f} us", flush=True)
    return timed[0][0]


def _kernel_attend(model, attn, op: Callable, config: dict) -> Callable:
    original = attn.attend

    def attend(q, k, v, cos, sin, mask, cache, attention, cache_position=None):
        k_buffers, v_buffers = getattr(cache, "k", None), getattr(cache, "v", None)
        if q.shape[0] * q.shape[1] != 1 or cache_position is None or not isinstance(k_buffers, list) \
                or not isinstance(v_buffers, list):
            return original(q, k, v, cos, sin, mask, cache, attention, cache_position)
        i = attn.layer_idx
        out = op(q.reshape(-1), k.reshape(-1), v.reshape(-1), model.inv_freq, k_buffers[i], v_buffers[i],
                 cache_position, config["block_s"], config["num_warps"], config["num_stages"])
        return out.view(1, 1, -1)
    return attend
