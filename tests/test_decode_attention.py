"""docs/perf/decode_attention.py (one decode token's RoPE, cache write and attention in one Triton launch, which
lab.decode_bench's lab-triton-attn puts in every layer) against lab.model's own modules in float64, on this CPU
through the Triton interpreter: odd head counts, groups and head sizes (tiles padded and masked), caches of odd
lengths holding random past keys and garbage past the token's slot, positions from 0 to the cache's last slot.
Left out of the student release with the kernel (grading/tools/release.py)."""
import importlib.util

import pytest
import torch

from lab.paths import REPO_ROOT
from lab.triton_interpreter import run_in_interpreter


def attention_module():
    path = REPO_ROOT / "docs" / "perf" / "decode_attention.py"
    spec = importlib.util.spec_from_file_location("decode_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_case(gen: torch.Generator, dtype: torch.dtype, num_kv_heads: int, group: int, head_dim: int,
                max_len: int, position: int) -> tuple:
    """q, k, v, inv_freq, k_cache, v_cache, position: every cache slot random (the past, and garbage after)."""
    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)
    theta = 10 ** (4 + 2 * float(torch.rand(1, generator=gen)))                    # RoPE bases from 1e4 to 1e6
    inv_freq = (1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)).float()
    return (rand(num_kv_heads * group * head_dim), rand(num_kv_heads * head_dim), rand(num_kv_heads * head_dim),
            inv_freq, rand(1, num_kv_heads, max_len, head_dim), rand(1, num_kv_heads, max_len, head_dim),
            torch.tensor([position]))


def check_rope_cache_attend(seed: int) -> None:
    """The kernel's output and the cache it leaves, against rope_cache_attend_reference in float64 on the same
    inputs: float32 within 1e-5 of the scores' scale, bfloat16 within its roundings (of q and k rotated, of p, of
    the output; the interpreter's casts truncate where a GPU's round); every slot but the token's untouched."""
    kernel = attention_module()
    gen = torch.Generator().manual_seed(seed)
    cases = [(1, 1, 32, 1, 0), (2, 4, 12, 9, 8), (3, 3, 34, 37, None), (2, 5, 64, 70, None), (1, 16, 16, 33, 32)]
    for num_kv_heads, group, head_dim, max_len, position in cases:
        for dtype, block_s in ((torch.float32, 16), (torch.bfloat16, 32)):
            pos = position if position is not None else int(torch.randint(1, max_len, (1,), generator=gen))
            args = random_case(gen, dtype, num_kv_heads, group, head_dim, max_len, pos)
            q, k, v, inv_freq, k_cache, v_cache, position = args
            want_args = [*(t.double() for t in (q, k, v)), inv_freq, k_cache.double(), v_cache.double(), position]
            want = kernel.rope_cache_attend_reference(*want_args, angle_dtype=dtype)
            before = [a.clone() for a in args[4:6]]
            got = kernel.rope_cache_attend(*args, block_s=block_s)
            what = f"Hkv={num_kv_heads} G={group} D={head_dim} max_len={max_len} position={pos} {dtype}"
            assert got.dtype == dtype and got.shape == args[0].shape, (what, got.dtype, got.shape)
            # |out| is at most max |v|; the error of softmax weights rounded to 2^-8 is a share of that scale
            scale = args[5][0, :, :pos + 1].double().abs().amax() + args[2].double().abs().max()
            tol = 1e-6 * scale if dtype == torch.float32 else 2 ** -5 * scale
            err = (got.double() - want).abs().max()
            assert err <= tol, f"{what}: output off by {float(err):.3g} (tolerance {float(tol):.3g})"
            for name, cache, old, new in (("k", args[4], before[0], want_args[4]), ("v", args[5], before[1],
                                                                                   want_args[5])):
                others = torch.ones(max_len, dtype=torch.bool)
                others[pos] = False
                assert torch.equal(cache[:, :, others], old[:, :, others]), f"{what}: {name} cache slots other " \
                    f"than {pos} changed"
                slot_tol = 1e-6 if dtype == torch.float32 else 2 ** -7
                slot_err = (cache[:, :, pos].double() - new[:, :, pos]).abs().max()
                bound = slot_tol * (new[:, :, pos].abs().max() + 1)
                assert slot_err <= bound, f"{what}: the {name} written at slot {pos} is off by {float(slot_err):.3g}"
    # a position past the cache writes and reads nothing there (index_copy_ would raise; a kernel can't)
    args = random_case(gen, torch.float32, 2, 2, 16, 5, 5)
    before = [a.clone() for a in args[4:6]]
    got = kernel.rope_cache_attend(*args, block_s=16)
    assert torch.equal(args[4], before[0]) and torch.equal(args[5], before[1]) and got.isfinite().all()


def test_rope_cache_attend_matches_the_models_modules_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_rope_cache_attend", seed)


@pytest.mark.parametrize("change, message", [
    (dict(k_cache=torch.zeros(1, 2, 5, 8)), r"k_cache and v_cache must both be \[1, Hkv, max_len, D=16\]"),
    (dict(inv_freq=torch.zeros(8, dtype=torch.float64)), r"inv_freq must be float32 \[head_dim / 2\]"),
    (dict(q=torch.zeros(33)), r"q must be \[H \* 16\]"),
    (dict(q=torch.zeros(64, dtype=torch.bfloat16)), "of one dtype"),
    (dict(position=torch.tensor([1.0])), "position must be one integer"),
    (dict(position=torch.tensor([1, 2])), "position must be one integer"),
])
def test_rope_cache_attend_refuses_what_it_cannot_compute(change, message):
    args = dict(q=torch.zeros(64), k=torch.zeros(32), v=torch.zeros(32), inv_freq=torch.zeros(8),
                k_cache=torch.zeros(1, 2, 5, 16), v_cache=torch.zeros(1, 2, 5, 16), position=torch.tensor([1]))
    with pytest.raises(ValueError, match=message):
        attention_module().rope_cache_attend(**{**args, **change})


def check_decode_bench_kernel_attention(seed: int) -> None:
    """lab.decode_bench's lab-triton-attn plumbing on a small model (float32): after use_decode_attention a prefill
    (the layers' own attend) and decode steps (the kernel, through its custom operator, compiled whole) give the
    untouched model's logits and leave the same cache; the operator's schema and fake agree with it."""
    from lab import decode_variants
    from lab.cache import StaticCache
    from lab.testing import random_config, random_lab_model
    gen = torch.Generator().manual_seed(seed)
    config = random_config(gen)                           # odd sizes, GQA groups of 1 to 3, head_dim 8 to 24
    model = random_lab_model(config, gen)
    prompt = torch.randint(config.vocab_size, (1, 7), generator=gen)

    def run():
        cache = StaticCache(config, 1, 13, torch.float32, "cpu")
        model(prompt, cache=cache, cache_position=torch.arange(7))
        step = lambda ids, pos: model(ids, cache=cache, cache_position=pos)[:, -1]      # noqa: E731
        logits = [step(prompt[:, i:i + 1], torch.tensor([7 + i])) for i in range(3)]
        return torch.stack(logits), cache

    with torch.no_grad():
        want, want_cache = run()
        decode_variants.use_decode_attention(model)
        got, got_cache = run()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()
    for a, b in zip(got_cache.k + got_cache.v, want_cache.k + want_cache.v):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()
    op = decode_variants.attention_op(attention_module().rope_cache_attend)
    q, kv, head = config.q_size, config.kv_size, config.head_dim
    k_cache, v_cache = torch.randn(1, config.num_kv_heads, 9, head), torch.randn(1, config.num_kv_heads, 9, head)
    inv_freq = model.inv_freq
    torch.library.opcheck(op, (torch.randn(q), torch.randn(kv), torch.randn(kv), inv_freq, k_cache, v_cache,
                               torch.tensor([4]), 16, 4, 1), test_utils=("test_schema", "test_faketensor"))
    compiled = torch.compile(lambda q, k, v, f, kc, vc, p: op(q, k, v, f, kc, vc, p, 16, 4, 1) * 1, backend="eager",
                             fullgraph=True)
    kc, vc = k_cache.clone(), v_cache.clone()
    inputs = (torch.randn(q), torch.randn(kv), torch.randn(kv), inv_freq)
    out = compiled(*inputs, kc, vc, torch.tensor([4]))
    ref_kc, ref_vc = k_cache.clone(), v_cache.clone()
    ref = attention_module().rope_cache_attend_reference(*inputs, ref_kc, ref_vc, torch.tensor([4]))
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5) and torch.allclose(kc, ref_kc, atol=1e-6) \
        and torch.allclose(vc, ref_vc), "the compiled operator neither computed nor wrote the cache as the reference"


def test_decode_bench_kernel_attention_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_decode_bench_kernel_attention", seed)


def check_time_configs(seed: int) -> None:
    """time_configs (lab-triton-attn's tuning) times only the configurations whose output and written slot agree
    with the reference, fastest first, on copies of the caches (the caller's stay as they were), and says why it
    left each other one out."""
    import triton.testing
    kernel = attention_module()
    gen = torch.Generator().manual_seed(seed)
    args = random_case(gen, torch.float32, 2, 3, 16, 21, int(torch.randint(1, 21, (1,), generator=gen)))
    before = [a.clone() for a in args[4:6]]
    real = kernel.rope_cache_attend
    good = [dict(block_s=16, num_warps=4, num_stages=s) for s in (1, 2, 3)]
    wrong_out, wrong_slot, broken = (dict(block_s=32, num_warps=4, num_stages=1), dict(block_s=32, num_warps=8,
                                     num_stages=1), dict(block_s=64, num_warps=4, num_stages=1))

    def attend(q, k, v, inv_freq, k_cache, v_cache, position, **config):
        out = real(q, k, v, inv_freq, k_cache, v_cache, position, **config)
        if config == wrong_out:
            return out * 1.001
        if config == wrong_slot:
            k_cache[:, :, int(position)] += 1e-3
        if config == broken:
            raise RuntimeError("out of resources")
        return out

    times = iter([3.0, 2.0, 1.0])

    def do_bench(fn, **_):
        fn()
        return next(times)

    kernel.rope_cache_attend, triton.testing.do_bench = attend, do_bench
    said: list[str] = []
    timed = kernel.time_configs(*args, [good[2], wrong_out, good[0], wrong_slot, broken, good[1]], say=said.append)
    assert timed == [(good[1], 1.0), (good[0], 2.0), (good[2], 3.0)], timed
    assert said[0].startswith("block_s=32 num_warps=4 num_stages=1: WRONG") and \
        said[1].startswith("block_s=32 num_warps=8 num_stages=1: WRONG"), said
    assert said[2].startswith("block_s=64 num_warps=4 num_stages=1: failed: RuntimeError: out of resources"), said
    assert torch.equal(args[4], before[0]) and torch.equal(args[5], before[1]), "time_configs wrote the caller's cache"
    assert len(kernel.configs()) == 18 and all(set(c) == set(kernel.GRID) for c in kernel.configs())


def test_attention_tuning_times_only_what_computes_right_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_time_configs", seed)
