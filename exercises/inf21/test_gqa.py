"""inf21 tests: grouped-query attention against multi-head attention on repeated K/V, in float64.

Oracles: `mha_reference` below (K/V repeated to every query head, softmax in float64: the textbook
definition); torch SDPA on the real model, through the lab's own attention; the tensors your code
allocates, watched op by op (`Allocations`), for the repeated K/V it must never build; on a GPU, torch
SDPA multi-head attention on 32 KV heads as the speed peer.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lab.impl import Topic
from lab.model import sdpa_attention
from lab.testing import call_keeping_inputs, pick
from lab.timing import compare

impl = Topic("inf21")

# Speed (GPU; docs/thresholds.md, inf21): one decode step of attention for a Llama-3-8B layer (32 query
# heads of 128), batch 8, 32k tokens of context, bf16. Your GQA with 8 KV heads against torch SDPA
# multi-head attention with 32 KV heads, which streams 4x the bytes: 4.3 GB against 1.07 GB, 1.0 ms
# against 0.25 ms at the H200's 4.3 TB/s. A long context keeps the ~0.05 ms of Python and launch overhead
# inside each timed call small next to that. Measured on an H200 at 8k context, batch 8 (measured-here.md):
# SDPA's own GQA (enable_gqa) 2.75x, GQA by repeat_interleave 0.20x. The starting threshold is 2.0x,
# below the 4x ideal by the fixed costs of a short kernel; the lead calibrates it (solution >= 1.2x it).
GPU_DECODE = dict(batch=8, num_heads=32, num_kv_heads=8, head_dim=128, context=32768)
# Calibrated on H100s (20 measurements in six processes each time): session 10, the reference 2.21-2.62x;
# session 11, 2.10-2.57x (2.10-2.24 in the first call after a machine's start); the naive expand-copies-kv
# 0.24-0.25x. 2.0x left session 10's worst 10% over, 1.8x left session 11's 17%; 1.7x leaves 24%. An H200
# (session 14): the reference 1.77-2.32x (median 2.10), the naive 0.18-0.19x: 1.7x left 1.77 4% over, so 1.45x
# (22% under the H200's worst).
GPU_DECODE_SPEEDUP = 1.45
# No CPU threshold: on the lab's shared 2-core CPU the same comparison (batch 1, 4k context, float32) gave
# 0.85x to 2.5x for the reference from one run to the next; a threshold there would grade the neighbours.


def mha_reference(q, k, v, causal: bool) -> torch.Tensor:
    """The definition in float64: every KV head repeated for its group of consecutive query heads."""
    group = q.shape[1] // k.shape[1]
    q, k, v = q.double(), k.double().repeat_interleave(group, dim=1), v.double().repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])                    # [B, H, T, S]
    if causal:
        t, s = q.shape[2], k.shape[2]
        visible = torch.arange(s)[None, :] <= (s - t + torch.arange(t))[:, None]
        scores = scores.masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def random_heads(rng, kind: str) -> tuple[int, int]:
    """(num_heads, num_kv_heads) of an attention kind: MHA, GQA (2-5 per group) or MQA (one KV head)."""
    if kind == "mha":
        heads = pick(rng, 2, 5)
        return heads, heads
    if kind == "mqa":
        return pick(rng, 3, 9), 1
    num_kv_heads = pick(rng, 2, 3)
    return num_kv_heads * pick(rng, 2, 5), num_kv_heads


def random_qkv(rng, batch, num_heads, num_kv_heads, q_len, kv_len, head_dim, dtype=torch.float32):
    q = torch.randn(batch, num_heads, q_len, head_dim, generator=rng)
    k = torch.randn(batch, num_kv_heads, kv_len, head_dim, generator=rng) * 1.5     # some peaked softmaxes
    v = torch.randn(batch, num_kv_heads, kv_len, head_dim, generator=rng)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def lengths(rng, case: str) -> tuple[int, int, bool]:
    """(q_len, kv_len, causal) of a case: prefill, a chunk after a cached prefix, decode, non-causal."""
    kv_len = pick(rng, 9, 61) | 1
    q_len = {"prefill": kv_len, "cached-prefix": pick(rng, 2, kv_len - 3), "decode": 1,
             "non-causal": pick(rng, 2, 2 * kv_len)}[case]
    return q_len, kv_len, case != "non-causal"


def check_close(got, want, atol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: expected [batch, num_heads, q_len, head_dim] = {list(want.shape)}, " \
                                    f"got {list(got.shape)}"
    err = (got.double() - want).abs()
    worst = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
    assert err.max() <= atol, (
        f"{what}: output differs from multi-head attention on repeated K/V (float64) by up to "
        f"{err.max():.2e} > {atol:.0e}, at [batch, head, token, dim] = {list(worst)}. Query head h uses KV head "
        f"h // group (consecutive query heads share one), and query i of q_len sees keys up to kv_len - q_len + i")


@pytest.mark.parametrize("kind", ["mha", "gqa", "mqa"])
@pytest.mark.parametrize("case", ["prefill", "cached-prefix", "decode", "non-causal"])
def test_gqa_matches_float64_mha_with_repeated_kv(rng, kind, case):
    num_heads, num_kv_heads = random_heads(rng, kind)
    q_len, kv_len, causal = lengths(rng, case)
    batch, head_dim = pick(rng, 1, 3), 2 * pick(rng, 4, 20)
    q, k, v = random_qkv(rng, batch, num_heads, num_kv_heads, q_len, kv_len, head_dim)
    want = mha_reference(q, k, v, causal)
    inputs = [t.clone() for t in (q, k, v)]
    got = impl.gqa.gqa_attention(q, k, v, causal=causal)
    assert got.dtype == q.dtype, f"expected the output in q's dtype {q.dtype}, got {got.dtype}"
    # float32 in, float32 softmax: ~1e-6 of error on outputs of size ~1 (max over 200 seeds: 2.1e-6).
    check_close(got, want, 1e-5, f"{kind}, {num_heads} query / {num_kv_heads} KV heads, {case}, q_len {q_len}, "
                                 f"kv_len {kv_len}")
    assert all(torch.equal(a, b) for a, b in zip(inputs, (q, k, v))), "gqa_attention modified its inputs"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_gqa_in_16_bit_within_rounding(rng, dtype):
    num_heads, num_kv_heads = random_heads(rng, "gqa")
    q_len, kv_len, causal = lengths(rng, "cached-prefix")
    q, k, v = random_qkv(rng, pick(rng, 1, 3), num_heads, num_kv_heads, q_len, kv_len, 64, dtype)
    got = call_keeping_inputs(impl.gqa.gqa_attention, q, k, v)        # the reference reads q, k, v after
    assert got.dtype == dtype, f"expected the output in q's dtype {dtype}, got {got.dtype}"
    # The same math as torch SDPA's: scores and P @ V in 16-bit with float32 accumulation, softmax in float32.
    # Over 200 seeds the reference erred up to 2.6e-2 in bf16 (8 mantissa bits), 3.4e-3 in fp16; a wrong head or
    # mask errs by ~1.
    check_close(got, mha_reference(q, k, v, causal), 6e-2 if dtype == torch.bfloat16 else 1e-2, f"{dtype}")


class Allocations(TorchDispatchMode):
    """Watch every aten op: the largest *new* tensor storage any op returns (views and in-place results,
    which share an input's storage, are not allocations)."""

    def __init__(self):
        super().__init__()
        self.largest, self.by = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                if t.untyped_storage().nbytes() > self.largest:
                    self.largest, self.by = t.untyped_storage().nbytes(), f"{func} -> {list(t.shape)}"
        return out


@pytest.mark.parametrize("case", ["decode", "cached-prefix"])
def test_gqa_never_materializes_repeated_kv(rng, case):
    """8 query heads per KV head at a 2k context: no tensor your code creates may be 4x the size of K."""
    batch, num_kv_heads, group, head_dim = 2, 2, 8, 64
    kv_len = pick(rng, 1500, 2500)
    q_len = 1 if case == "decode" else pick(rng, 2, 3)
    q, k, v = random_qkv(rng, batch, num_kv_heads * group, num_kv_heads, q_len, kv_len, head_dim)
    with Allocations() as seen:
        out = impl.gqa.gqa_attention(q, k, v)
    check_close(out, mha_reference(q, k, v, True), 1e-5, case)
    k_bytes = k.numel() * k.element_size()
    assert seen.largest < group // 2 * k_bytes, (
        f"{case}: your code allocated a tensor of {seen.largest:,} bytes ({seen.by}), {seen.largest / k_bytes:.1f}x "
        f"the K of {k_bytes:,} bytes; K or V repeated for the {group} query heads of each group would be "
        f"{group * k_bytes:,}. Share the KV heads instead: view q as [batch, num_kv_heads, group * q_len, head_dim] "
        "(a matmul that broadcasts k over a group dimension copies it too)")


def test_gqa_rejects_bad_shapes(rng):
    q, k, v = random_qkv(rng, 2, 6, 2, 3, 7, 8)
    assert impl.gqa.gqa_attention(q, k, v).shape == q.shape
    bad = {
        "num_heads not a multiple of num_kv_heads": (q[:, :5], k, v),
        "k and v of different lengths": (q, k, v[:, :, :6]),
        "batch differs": (q[:1], k, v),
        "head_dim differs": (q[..., :6], k, v),
        "3-D q": (q[0], k, v),
        "causal q_len > kv_len": (torch.randn(2, 6, 8, 8), k, v),
        "mixed dtypes": (q.double(), k, v),
    }
    for what, args in bad.items():
        with pytest.raises(ValueError):
            impl.gqa.gqa_attention(*args)
            pytest.fail(f"{what}: expected a ValueError")


def test_gqa_runs_the_real_model(real_model, tokenizer, rng):
    """SmolLM2 (9 query / 3 KV heads) with your attention: prefill and cached decode logits as with SDPA."""
    from lab.data import eval_token_ids
    from lab.testing import ConcatCache

    ids = torch.tensor([eval_token_ids(tokenizer, max_tokens=pick(rng, 40, 90) | 1)])
    prompt_len = ids.shape[1] - 3
    attention = real_model.attention
    try:
        with torch.no_grad():
            real_model.attention = sdpa_attention
            want = real_model(ids)
            real_model.attention = lambda q, k, v, mask: impl.gqa.gqa_attention(q, k, v, causal=True)
            cache = ConcatCache(real_model.config.num_layers)
            got = [real_model(ids[:, :prompt_len], cache=cache)]
            for t in range(prompt_len, ids.shape[1]):
                got.append(real_model(ids[:, t:t + 1], cache=cache))
    finally:
        real_model.attention = attention
    err = (torch.cat(got, dim=1) - want).abs().max().item()
    assert err < 2e-3, (f"the real model's logits with your attention (prefill {prompt_len}, then 3 cached decode "
                        f"steps) differ from torch SDPA's by up to {err:.2e} (expected < 2e-3)")


# ------------------------------------------------------------------------------------------------ speed
def time_gqa_decode(batch, num_heads, num_kv_heads, head_dim, context, device, dtype, threshold, benchmark=None,
                    record=None, rounds: int = 15, attention=None, name: str = "gqa_attention decode"):
    """One decode step: your GQA (`attention(q, k, v)`, default gqa_attention) over `num_kv_heads` cached
    heads against SDPA MHA over `num_heads` cached heads (same query heads, same context), a fresh query
    every call. Returns the lab.timing.Comparison."""
    attention = attention or (lambda q, k, v: impl.gqa.gqa_attention(q, k, v))
    gen = torch.Generator(device=device).manual_seed(0)
    cache = lambda heads: torch.randn(batch, heads, context, head_dim, generator=gen, device=device,  # noqa: E731
                                      dtype=dtype)
    k_gqa, v_gqa = cache(num_kv_heads), cache(num_kv_heads)
    k_mha, v_mha = cache(num_heads), cache(num_heads)

    def make_inputs():
        return (torch.randn(batch, num_heads, 1, head_dim, generator=gen, device=device, dtype=dtype),)

    def check(out, args):
        want = F.scaled_dot_product_attention(args[0], k_gqa, v_gqa, enable_gqa=True)
        err = (out.float() - want.float()).abs().max().item()
        assert err < 2e-2, f"the timed GQA output differs from SDPA's by {err:.2e}: it must compute what is timed"

    return compare(lambda q: attention(q, k_gqa, v_gqa),
                   lambda q: F.scaled_dot_product_attention(q, k_mha, v_mha), threshold=threshold,
                   make_inputs=make_inputs, check=check, rounds=rounds, benchmark=benchmark, record=record,
                   what=f"{name}, {num_kv_heads} KV heads vs SDPA MHA with {num_heads}, batch {batch}, "
                        f"context {context}, head_dim {head_dim}, {dtype}")


@pytest.mark.gpu
@pytest.mark.speed
def test_gqa8_decode_beats_mha32_on_gpu(benchmark, record_property):
    time_gqa_decode(**GPU_DECODE, device="cuda", dtype=torch.bfloat16, threshold=GPU_DECODE_SPEEDUP,
                    benchmark=benchmark, record=record_property).assert_passes()


@pytest.mark.gpu
def test_gqa_decode_peak_memory_stays_below_repeated_kv_on_gpu():
    """At the speed test's shape, the GPU's peak memory during one call must stay far below the 8.6 GB that
    K and V repeated to 32 heads would take (1/8 of it is the limit)."""
    s = GPU_DECODE
    k = torch.randn(s["batch"], s["num_kv_heads"], s["context"], s["head_dim"], device="cuda", dtype=torch.bfloat16)
    v, q = torch.randn_like(k), torch.randn(s["batch"], s["num_heads"], 1, s["head_dim"], device="cuda",
                                            dtype=torch.bfloat16)
    impl.gqa.gqa_attention(q, k, v)                          # warm-up (allocator, kernels)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = impl.gqa.gqa_attention(q, k, v)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    repeated = 2 * k.numel() * k.element_size() * s["num_heads"] // s["num_kv_heads"]
    assert extra < repeated // 8, (f"one GQA decode call took {extra / 2**20:,.0f} MiB of GPU memory beyond its "
                                   f"inputs; K and V repeated to {s['num_heads']} heads are "
                                   f"{repeated / 2**20:,.0f} MiB: share the KV heads instead of copying them")
    want = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert (out.float() - want.float()).abs().max() < 2e-2, "the GQA output differs from SDPA's on the GPU"
