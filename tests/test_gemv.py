"""docs/perf/gemv_kernel.py (the Triton GEMV that docs/perf/gemv_sweep.py times on a GPU) against its float64
definition, on this CPU through the Triton interpreter: odd sizes, every masking path (rows and columns past the
matrix, K split into ranges that end mid-block), fresh random inputs per seed. Left out of the student release
with the kernel (grading/tools/release.py)."""
import importlib.util

import pytest
import torch

from lab.paths import REPO_ROOT
from lab.triton_interpreter import run_in_interpreter


def gemv_module():
    spec = importlib.util.spec_from_file_location("gemv_kernel", REPO_ROOT / "docs" / "perf" / "gemv_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CONFIGS = [dict(block_n=4, block_k=16, split_k=1), dict(block_n=8, block_k=32, split_k=3, reduce="atomic"),
           dict(block_n=2, block_k=64, split_k=2, reduce="last"), dict(block_n=16, block_k=16, split_k=5),
           dict(block_n=4, block_k=16, split_k=4, reduce="atomic")]


def odd_sizes(config: dict, gen: torch.Generator) -> tuple[int, int]:
    """N and K for one case: random, and with K past one block when the configuration splits K, so that the
    split really happens (K within a block would run one program per row block, whatever split_k says)."""
    low = config["block_k"] + 1 if config.get("split_k", 1) > 1 else 5
    n, k = (int(v) for v in torch.randint(5, 90, (2,), generator=gen))
    return n, low + k % (90 - low + config["block_k"])


def check_gemv(seed: int) -> None:
    kernel = gemv_module()
    gen = torch.Generator().manual_seed(seed)
    for config in CONFIGS:
        for dtype in (torch.float32, torch.bfloat16):
            n, k = odd_sizes(config, gen)
            weight = torch.randn(n, k, generator=gen).to(dtype)
            counters = kernel.counters_for(n, config["block_n"], "cpu")
            for call in range(2):               # reduce="last" leaves its counters at zero for the next call
                x = torch.randn(k, generator=gen).to(dtype)
                got = kernel.gemv(weight, x, counters=counters, **config)
                want = kernel.gemv_reference(weight, x)
                scale = (weight.double().abs() @ x.double().abs())
                # float32: the sum's rounding grows with the products' scale, not with a row's result, which
                # cancellation can leave small (a row of 0.0054 off by 9e-7 at scale ~10 failed a tighter bound)
                if dtype == torch.bfloat16:
                    tol = 2 ** -7 * (want.abs() + scale * 2 ** -8 + 1e-6)
                else:
                    tol = 1e-5 * (want.abs() + scale) + 1e-6
                assert got.dtype == dtype and got.shape == (n,), (got.dtype, got.shape)
                bad = ((got.double() - want).abs() > tol).nonzero().flatten().tolist()
                assert not bad, (f"{config} {dtype} N={n} K={k}, call {call}: rows {bad[:5]} differ, got "
                                 f"{got[bad[:3]].tolist()} want {want[bad[:3]].tolist()}")
                assert not counters.any(), f"{config}: counters left at {counters.tolist()} after call {call}"
    with pytest.raises(ValueError, match="counters must be int32 with at least 3"):
        kernel.gemv(torch.zeros(9, 64), torch.zeros(64), block_n=4, block_k=16, split_k=2,
                    counters=torch.zeros(2, dtype=torch.int32))


FUSED = [dict(norm=True), dict(silu_mul=True), dict(residual=True), dict(norm=True, residual=True),
         dict(silu_mul=True, residual=True)]


def check_fused_gemv(seed: int) -> None:
    """gemv's fused forms (RMSNorm before, silu(gate) * up before, a residual after: a decode layer's
    neighbours of its projections) against lab.model's own modules and F.linear, on every way of meeting a K
    split's sums: float32 within 1e-5, bfloat16 within the roundings of x' and of the output."""
    kernel = gemv_module()
    gen = torch.Generator().manual_seed(seed)
    for config in (dict(block_n=4, block_k=16, split_k=1), dict(block_n=8, block_k=16, split_k=3),
                   dict(block_n=4, block_k=32, split_k=2, reduce="atomic")):
        for fused in FUSED:
            for dtype in (torch.float32, torch.bfloat16):
                n, k = odd_sizes(config, gen)
                weight = torch.randn(n, k, generator=gen).to(dtype)
                x = (torch.randn(2 * k if fused.get("silu_mul") else k, generator=gen) * 3).to(dtype)
                norm_weight = (1 + 0.5 * torch.randn(k, generator=gen)).to(dtype)
                kw = dict(norm_weight=norm_weight if fused.get("norm") else None,
                          eps=float(torch.rand(1, generator=gen)) + 0.5,     # large: an eps left out shows
                          silu_mul=fused.get("silu_mul", False),
                          residual=torch.randn(n, generator=gen).to(dtype) if fused.get("residual") else None)
                got = kernel.gemv(weight, x, **config, **kw)
                want = kernel.fused_reference(weight, x, **kw).double()
                # the products' scale: |W| |x'| for x' what the product takes (normalised, or silu(gate) * up)
                x_eff = kernel.fused_reference(torch.eye(k, dtype=dtype), x, **{**kw, "residual": None})
                bound = weight.double().abs() @ x_eff.double().abs()
                # bfloat16: x' rounded twice (the interpreter's casts truncate, where a GPU's round to nearest)
                # and the output once, each up to 2^-7 of its value; float32 catches a wrong formula
                tol = 2 ** -6 * bound + 2 ** -7 * want.abs() if dtype == torch.bfloat16 else 1e-5 * (want.abs() + bound)
                tol = tol + 1e-6
                assert got.dtype == dtype and got.shape == (n,), (got.dtype, got.shape)
                bad = ((got.double() - want).abs() > tol).nonzero().flatten().tolist()
                assert not bad, (f"{config} {fused} {dtype} N={n} K={k}: rows {bad[:5]} differ, got "
                                 f"{got[bad[:3]].tolist()} want {want[bad[:3]].tolist()}")
    for bad_args, message in (((torch.zeros(4, 3), torch.zeros(3)), "x [2K]"),):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            kernel.gemv(*bad_args, silu_mul=True)
    with pytest.raises(ValueError, match="norm_weight must be"):
        kernel.gemv(torch.zeros(4, 3), torch.zeros(3), norm_weight=torch.ones(4))
    with pytest.raises(ValueError, match="residual must be"):
        kernel.gemv(torch.zeros(4, 3), torch.zeros(3), residual=torch.ones(3))


def test_fused_gemv_matches_the_models_modules_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_fused_gemv", seed)


def test_gemv_matches_float64_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_gemv", seed)


def test_the_tuning_grid_splits_k_only_where_rows_are_few():
    """A K split is tried only up to SPLIT_MAX_ROWS rows, each way of meeting its sums; no split is one
    configuration, whatever `reduce` says."""
    kernel = gemv_module()
    few, many = kernel.configs(4096), kernel.configs(kernel.SPLIT_MAX_ROWS + 1)
    grid = kernel.QUICK_GRID
    splits = len(grid["split_k"]) - 1
    assert len(few) == len(many) * (1 + splits * len(grid["reduce"])) and {c["split_k"] for c in many} == {1}
    assert all(set(c) == set(grid) for c in few) and kernel.label(few[0]) == "n4 k512 w4 s1 split1"
    assert {kernel.label(c).split(" ", 4)[-1] for c in few} == {"split1", "split2 last", "split2 atomic",
                                                                 "split4 last", "split4 atomic"}


def check_time_configs(seed: int) -> None:
    """time_configs (the tuning of gemv_sweep and lab-triton) times only the candidates that compute right and
    leave reduce="last"'s counters at zero, fastest first, and says why it left each other one out."""
    import triton.testing
    kernel = gemv_module()
    gen = torch.Generator().manual_seed(seed)
    weight, x = torch.randn(37, 70, generator=gen), torch.randn(70, generator=gen)
    real_gemv = kernel.gemv
    good = [dict(block_n=4, block_k=16, split_k=s, reduce=r, num_warps=1, num_stages=1)
            for s, r in ((1, "last"), (2, "last"), (3, "atomic"))]
    wrong, stuck, broken = ({**good[0], "block_k": 32}, {**good[1], "block_n": 8}, {**good[0], "block_n": 16})

    def gemv(w, v, counters=None, **config):
        y = real_gemv(w, v, counters=counters, **config)
        if config == wrong:
            return y + 1
        if config == stuck:
            counters += 1                                   # a reset forgotten
        if config == broken:
            raise RuntimeError("out of resources")
        return y

    times = iter([3.0, 2.0, 1.0])                           # the candidates timed, in order: the last is fastest

    def do_bench(fn, **_):
        fn()
        return next(times)

    kernel.gemv, triton.testing.do_bench = gemv, do_bench
    said: list[str] = []
    timed = kernel.time_configs(weight, x, [good[2], wrong, good[0], stuck, broken, good[1]], say=said.append)
    assert timed == [(good[1], 1.0), (good[0], 2.0), (good[2], 3.0)], timed
    assert said[:2] == [f"{kernel.label(wrong)}: WRONG, left out", f"{kernel.label(stuck)}: WRONG, left out"], said
    assert said[2].startswith(f"{kernel.label(broken)}: failed: RuntimeError: out of resources"), said


def test_tuning_times_only_what_computes_right_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_time_configs", seed)


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(3, 4), torch.zeros(5)), "weight [N, K] and x [K]"),
    ((torch.zeros(4, 3).t(), torch.zeros(4)), "rows contiguous"),
    ((torch.zeros(4, 3), torch.zeros(3), "sum"), "reduce must be one of"),
])
def test_gemv_refuses_what_it_cannot_compute(args, message):
    gemv = gemv_module().gemv
    *tensors, reduce = args if len(args) == 3 else (*args, "last")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        gemv(*tensors, reduce=reduce)


def check_decode_bench_swaps_every_matrix(seed: int) -> None:
    """lab.decode_bench's lab-triton plumbing on a small model: after use_triton_gemv (tuning replaced by a fixed
    configuration with a K split), every projection and the LM head is a TritonGemvLinear, a decode step's
    logits equal the untouched model's (float32), and torch.compile traces a TritonGemvLinear whole (fullgraph);
    after use_fused_layers (lab-triton-fused) a prefill and a decode step still give the untouched logits."""
    from lab import decode_variants
    from lab.cache import StaticCache
    from lab.config import ModelConfig
    from lab.weights import random_model
    config = ModelConfig(name="tiny", vocab_size=97, hidden_size=48, intermediate_size=80, num_layers=2, num_heads=4,
                         num_kv_heads=2, head_dim=12, max_position_embeddings=64, tie_word_embeddings=False)
    model = random_model(config, torch.float32, "cpu", seed=seed)
    prompt = torch.randint(config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(seed))

    def logits():
        cache = StaticCache(config, 1, 16, torch.float32, "cpu")
        model(prompt, cache=cache, cache_position=torch.arange(7))
        return model(prompt[:, -1:], cache=cache, cache_position=torch.tensor([7]))[0, -1]

    with torch.no_grad():
        want = logits()
        decode_variants.tune_gemv = lambda kernel, weight: (
            dict(block_n=4, block_k=16, split_k=2, num_warps=4, num_stages=1, reduce="last"), 1e-3)
        decode_variants.use_triton_gemv(model, 1e12)
        swapped = [m for m in model.modules() if isinstance(m, decode_variants.TritonGemvLinear)]
        assert len(swapped) == 4 * config.num_layers + 1, len(swapped)      # qkv, o, gate-up, down; the head
        got = logits()
        head = model.lm_head                  # what torch.compile sees: one opaque operator, traced whole
        x = torch.randn(1, 1, config.hidden_size, generator=torch.Generator().manual_seed(seed))
        compiled = torch.compile(head, backend="eager", fullgraph=True)(x)
        c = head.config                       # and its fake (what compile traces with) agrees with it
        torch.library.opcheck(head.op, (head.weight, x.reshape(-1), head.counters, c["block_n"], c["block_k"],
                                        c["split_k"], c["num_warps"], c["num_stages"], c["reduce"]),
                              test_utils=("test_schema", "test_faketensor"))
        assert not any(m.counters.any() for m in swapped)       # reduce="last" leaves its counters at zero
        layer = model.layers[0]                 # the fused forms through the operator too (lab-triton-fused)
        down, h = layer.mlp.down_proj, torch.randn(2 * config.intermediate_size, generator=torch.Generator())
        torch.library.opcheck(down.op, (down.weight, h, down.counters, c["block_n"], c["block_k"], c["split_k"],
                                        c["num_warps"], c["num_stages"], c["reduce"], None, 1e-5, True,
                                        torch.randn(config.hidden_size)), test_utils=("test_schema", "test_faketensor"))
        decode_variants.use_fused_layers(model)    # lab-triton-fused: norms, silu * up and residuals in the GEMVs
        fused = logits()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()
    assert torch.allclose(fused, want, rtol=1e-4, atol=1e-4), (fused - want).abs().max()
    plain = x @ head.weight.t()
    assert torch.allclose(compiled, plain, rtol=1e-4, atol=1e-4), (compiled - plain).abs().max()


def test_decode_bench_lab_triton_swaps_every_matrix_under_the_interpreter(seed):
    run_in_interpreter(__file__, "check_decode_bench_swaps_every_matrix", seed)
