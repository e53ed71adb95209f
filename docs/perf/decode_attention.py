"""One decode token's attention for one layer in one Triton launch: RoPE on q and k, k and v written into the
static cache at the token's slot, and attention of the token's query heads over the slots up to it.

lab.decode_bench's `lab-triton-attn` puts it in each layer of the Llama-3-8B decode step (issue 10: reach 85% of
copy bandwidth on both cards). Compiled, lab.model's `Attention.attend` costs a step four kernels a layer:
RoPE with the cache write, two pointwise kernels Inductor makes around cuDNN's attention (the mask and the
inputs' layout), and cuDNN's flash kernel. Session 15's H100 profile put them at ~410 us of a ~5.9 ms step
(attention 214 us, 6.7 us a layer for one query over ~80 keys; the rest 170-200 us), on top of ~15 GB of weights
that the step reads at the roofline. This kernel does the same work in one launch per layer.

One program per KV head serves the G query heads of its group (GQA: each key and value read once for all G):
  1. it rotates the token's key (and the group's queries) by the position's angles, computed from the model's
     inv_freq as `LlamaModel.rope` computes them, rounding to the model's dtype as lab.model's `apply_rope` does;
  2. it starts the online softmax with that new key and value, held in registers;
  3. it walks slots [0, position) of the cache in BLOCK_S-key tiles, tl.dot over each half of head_dim (the
     rotation's halves: q . k = q1 . k1 + q2 . k2), the products in float32, the softmax in float32;
  4. last, it stores the rotated key and the value at slot `position` (no other program writes this KV head, and
     none reads that slot in this launch).
The mask is causal with no padding (slot s visible when s <= position), which is what a batch-1 decode step's
static mask is (lab.model.build_static_mask without attention_mask). Slots at or past the cache's end are neither
written nor read. A single program walks a whole KV head's context: fine for decode_bench's ~150 slots; a long
context would want the context split across programs (flash-decoding, inf21's kernel).

`rope_cache_attend_reference` is the definition through lab.model's own modules (apply_rope, the static cache's
index_copy_, sdpa_attention): tests/test_decode_attention.py checks the kernel against it under the Triton
interpreter. Both live out of the student release, as docs/perf's GEMV kernel does.
"""
from __future__ import annotations

import itertools
import math
import os
from typing import Callable

import torch
import triton
import triton.language as tl


# What lab.decode_bench's lab-triton-attn tunes over (time_configs) for the bench's cache, before it compiles
GRID = dict(block_s=(32, 64, 128), num_warps=(4, 8), num_stages=(1, 2, 3))


def configs() -> list[dict]:
    return [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]


@triton.jit
def _rope_cache_attend_kernel(q_ptr, k_ptr, v_ptr, inv_freq_ptr, k_cache_ptr, v_cache_ptr, pos_ptr, out_ptr,
                              group, head_dim, max_len, stride_ch, stride_cs, scale,
                              HALF: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr,
                              DOT_F32: tl.constexpr):
    kv = tl.program_id(0)
    half = head_dim // 2
    pos = tl.load(pos_ptr)
    j = tl.arange(0, HALF)
    in_half = j < half
    dtype = k_cache_ptr.dtype.element_ty
    # the angles as LlamaModel.rope computes them: position x inv_freq in float32, cos and sin rounded to the dtype
    # (both halves of head_dim share them); computed here, not read, so compile has no cos/sin tensor to make
    angles = pos.to(tl.float32) * tl.load(inv_freq_ptr + j, mask=in_half, other=0.0)
    c = tl.cos(angles).to(dtype).to(tl.float32)
    s = tl.sin(angles).to(dtype).to(tl.float32)

    # the new key, rotated (x * cos + [-x2, x1] * sin) and rounded as the model rounds; the new value as is
    k1 = tl.load(k_ptr + kv * head_dim + j, mask=in_half, other=0.0).to(tl.float32)
    k2 = tl.load(k_ptr + kv * head_dim + half + j, mask=in_half, other=0.0).to(tl.float32)
    k1, k2 = (k1 * c - k2 * s).to(dtype), (k2 * c + k1 * s).to(dtype)
    v1 = tl.load(v_ptr + kv * head_dim + j, mask=in_half, other=0.0)
    v2 = tl.load(v_ptr + kv * head_dim + half + j, mask=in_half, other=0.0)

    # the group's queries [BLOCK_G, HALF] x 2, rotated and rounded, then scaled in float32
    g = tl.arange(0, BLOCK_G)
    q_mask = (g[:, None] < group) & in_half[None, :]
    q_rows = q_ptr + (kv * group + g)[:, None] * head_dim + j[None, :]
    q1 = tl.load(q_rows, mask=q_mask, other=0.0).to(tl.float32)
    q2 = tl.load(q_rows + half, mask=q_mask, other=0.0).to(tl.float32)
    q1, q2 = (q1 * c[None, :] - q2 * s[None, :]).to(dtype), (q2 * c[None, :] + q1 * s[None, :]).to(dtype)
    q1, q2 = q1.to(tl.float32) * scale, q2.to(tl.float32) * scale

    # the online softmax starts from the new key: m = its score, denom = 1, acc = its value
    m = tl.sum(q1 * k1.to(tl.float32)[None, :], axis=1) + tl.sum(q2 * k2.to(tl.float32)[None, :], axis=1)
    denom = tl.full((BLOCK_G,), 1.0, dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_G, HALF), dtype=tl.float32) + v1.to(tl.float32)[None, :]
    acc2 = tl.zeros((BLOCK_G, HALF), dtype=tl.float32) + v2.to(tl.float32)[None, :]
    if not DOT_F32:
        q1, q2 = q1.to(dtype), q2.to(dtype)                 # 16-bit tensor-core dots on a GPU
    end = tl.minimum(pos, max_len)
    k_base = k_cache_ptr + kv * stride_ch
    v_base = v_cache_ptr + kv * stride_ch
    for s0 in range(0, end, BLOCK_S):
        slots = s0 + tl.arange(0, BLOCK_S)
        valid = slots < end
        tile = valid[:, None] & in_half[None, :]
        rows = slots[:, None] * stride_cs + j[None, :]
        kt1 = tl.load(k_base + rows, mask=tile, other=0.0)                  # [BLOCK_S, HALF]
        kt2 = tl.load(k_base + rows + half, mask=tile, other=0.0)
        vt1 = tl.load(v_base + rows, mask=tile, other=0.0)
        vt2 = tl.load(v_base + rows + half, mask=tile, other=0.0)
        if DOT_F32:
            scores = tl.dot(q1, tl.trans(kt1.to(tl.float32)), input_precision="ieee") + \
                tl.dot(q2, tl.trans(kt2.to(tl.float32)), input_precision="ieee")
        else:
            scores = tl.dot(q1, tl.trans(kt1)) + tl.dot(q2, tl.trans(kt2))   # float32 accumulation
        scores = tl.where(valid[None, :], scores, float("-inf"))           # [BLOCK_G, BLOCK_S]
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new[:, None])
        denom = denom * alpha + tl.sum(p, axis=1)
        if DOT_F32:
            acc1 = acc1 * alpha[:, None] + tl.dot(p, vt1.to(tl.float32), input_precision="ieee")
            acc2 = acc2 * alpha[:, None] + tl.dot(p, vt2.to(tl.float32), input_precision="ieee")
        else:
            acc1 = acc1 * alpha[:, None] + tl.dot(p.to(dtype), vt1)
            acc2 = acc2 * alpha[:, None] + tl.dot(p.to(dtype), vt2)
        m = m_new

    # the new key and value into the cache last: stored before the loop, they would hold back its tile loads (the
    # compiler cannot tell the slot from the tiles), a memory round trip more on each layer's critical path
    slot = k_cache_ptr + kv * stride_ch + pos * stride_cs
    writes = j < tl.where(pos < max_len, half, 0)         # nothing at or past the cache's end
    tl.store(slot + j, k1, mask=writes)
    tl.store(slot + half + j, k2, mask=writes)
    v_slot = v_cache_ptr + kv * stride_ch + pos * stride_cs
    tl.store(v_slot + j, v1.to(dtype), mask=writes)
    tl.store(v_slot + half + j, v2.to(dtype), mask=writes)
    out_rows = out_ptr + (kv * group + g)[:, None] * head_dim + j[None, :]
    tl.store(out_rows, (acc1 / denom[:, None]).to(dtype), mask=q_mask)
    tl.store(out_rows + half, (acc2 / denom[:, None]).to(dtype), mask=q_mask)


def rope_cache_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor,
                      k_cache: torch.Tensor, v_cache: torch.Tensor, position: torch.Tensor, *, block_s: int = 64,
                      num_warps: int = 4, num_stages: int = 2) -> torch.Tensor:
    """One token's attention output [H * D] for q [H * D], k and v [Hkv * D] (a layer's projections, before RoPE),
    inv_freq [D / 2] float32 (lab.model's `LlamaModel.inv_freq`), the layer's static cache k_cache and v_cache
    [1, Hkv, max_len, D] (contiguous), and `position`, a one-element integer tensor on the same device (read there,
    so a CUDA graph replays it): the token's position, the slot it is written at, and the last slot it sees.
    """
    head_dim = 2 * inv_freq.numel()
    if k_cache.dim() != 4 or k_cache.shape[0] != 1 or k_cache.shape != v_cache.shape or k_cache.shape[-1] != head_dim:
        raise ValueError(f"k_cache and v_cache must both be [1, Hkv, max_len, D={head_dim}], got "
                         f"{list(k_cache.shape)} and {list(v_cache.shape)}")
    num_kv_heads, max_len = k_cache.shape[1], k_cache.shape[2]
    if inv_freq.dtype != torch.float32 or inv_freq.dim() != 1:
        raise ValueError(f"inv_freq must be float32 [head_dim / 2], got {inv_freq.dtype} {list(inv_freq.shape)}")
    if k.numel() != num_kv_heads * head_dim or v.numel() != k.numel() or q.numel() % k.numel():
        raise ValueError(f"q must be [H * {head_dim}] and k, v [{num_kv_heads} * {head_dim}] with H a multiple of "
                         f"{num_kv_heads}; got {q.numel()}, {k.numel()} and {v.numel()} elements")
    tensors = (q, k, v, inv_freq, k_cache, v_cache)
    if any(not t.is_contiguous() for t in tensors) or len({t.dtype for t in (q, k, v, k_cache, v_cache)}) != 1:
        raise ValueError("q, k, v, inv_freq and the caches must be contiguous, and q, k, v and the caches of one dtype")
    if position.numel() != 1 or position.dtype not in (torch.int32, torch.int64) or \
            len({t.device for t in (*tensors, position)}) != 1:
        raise ValueError(f"position must be one integer on the tensors' device, got {position.dtype} "
                         f"{list(position.shape)} on {position.device}")
    group = q.numel() // k.numel()
    out = torch.empty_like(q)
    # tl.dot's tiles are at least 16 a side: the group and each half of head_dim are padded (masked) up to it
    _rope_cache_attend_kernel[(num_kv_heads,)](
        q, k, v, inv_freq, k_cache, v_cache, position, out, group, head_dim, max_len,
        k_cache.stride(1), k_cache.stride(2), 1.0 / math.sqrt(head_dim),
        HALF=max(16, triton.next_power_of_2(head_dim // 2)), BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_S=block_s, DOT_F32=q.dtype == torch.float32 or os.environ.get("TRITON_INTERPRET") == "1",
        num_warps=num_warps, num_stages=num_stages)
    return out


def rope_cache_attend_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor,
                                k_cache: torch.Tensor, v_cache: torch.Tensor, position: torch.Tensor,
                                angle_dtype: torch.dtype | None = None) -> torch.Tensor:
    """rope_cache_attend through lab.model's modules, as the decode step computes it uncompiled: the angles as
    LlamaModel.rope makes them (float32 work, cos and sin rounded to `angle_dtype`, by default q's), apply_rope,
    the static cache's index_copy_ at `position`, then sdpa_attention over the whole buffers with the static mask.
    (A float64 check of a bfloat16 kernel passes float64 tensors and angle_dtype=torch.bfloat16.)"""
    from lab.model import apply_rope, build_static_mask, sdpa_attention
    num_kv_heads, max_len, head_dim = k_cache.shape[1:]
    position = position.reshape(1).long()
    angles = position.float()[:, None] * inv_freq.float()                       # as LlamaModel.rope, float32
    angles = torch.cat((angles, angles), dim=-1).view(1, 1, 1, head_dim)
    cos, sin = (f(angles).to(angle_dtype or q.dtype).to(q.dtype) for f in (torch.cos, torch.sin))
    qh = q.view(1, -1, 1, head_dim)
    kh, vh = k.view(1, num_kv_heads, 1, head_dim), v.view(1, num_kv_heads, 1, head_dim)
    qh, kh = apply_rope(qh, cos, sin), apply_rope(kh, cos, sin)
    k_cache.index_copy_(2, position, kh)
    v_cache.index_copy_(2, position, vh)
    out = sdpa_attention(qh, k_cache, v_cache, build_static_mask(position, max_len, None))
    return out.reshape(-1)


def time_configs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, k_cache: torch.Tensor,
                 v_cache: torch.Tensor, position: torch.Tensor, candidates: list[dict],
                 say: Callable[[str], None] = lambda _: None) -> list[tuple[dict, float]]:
    """[(config, milliseconds)] fastest first, by `triton.testing.do_bench` (the L2 flushed before every call, as a
    decode step's 15 GB of weights flush it between layers), of each candidate whose output and written slot agree
    with rope_cache_attend_reference (in float32, on copies of the caches) within the dtype's rounding; a wrong one
    or one that fails to launch is left out, and `say` is told why. The caches are written at `position` (only)."""
    from triton.testing import do_bench
    work = [t.float() for t in (q, k, v)]
    want_k, want_v = (t.to(torch.float32, copy=True) for t in (k_cache, v_cache))   # never the caller's
    want = rope_cache_attend_reference(*work, inv_freq, want_k, want_v, position, angle_dtype=q.dtype)
    slot = int(position)
    scale = float(want_v[:, :, :slot + 1].abs().max())
    out_tol, slot_tol = (1e-5, 1e-6) if q.dtype == torch.float32 else (2 ** -5, 2 ** -7)
    timed = []
    for config in candidates:
        name = " ".join(f"{key}={value}" for key, value in config.items())
        kc, vc = k_cache.clone(), v_cache.clone()
        try:
            out = rope_cache_attend(q, k, v, inv_freq, kc, vc, position, **config)
            wrote = max(float((kc[:, :, slot].float() - want_k[:, :, slot]).abs().max()),
                        float((vc[:, :, slot].float() - want_v[:, :, slot]).abs().max()))
            err = float((out.float() - want).abs().max())
            if not err <= out_tol * scale or not wrote <= slot_tol * (1 + float(want_k[:, :, slot].abs().max())):
                say(f"{name}: WRONG (output off by {err:.3g}, slot by {wrote:.3g}), left out")
                continue
            timed.append((config, do_bench(lambda: rope_cache_attend(q, k, v, inv_freq, kc, vc, position, **config),
                                           warmup=10, rep=30)))
        except Exception as e:                  # out of resources and the like: say so, go on
            say(f"{name}: failed: {type(e).__name__}: {str(e)[:120]}")
    return sorted(timed, key=lambda kv: kv[1])
