"""Issue 10, session 10: why three kernel tests flip or miss their margin on an H100, measured on the GPU.

Session 10's calls 1-3 (H100) gave, per process, ratios stable within a process but not across processes:
  inf20 flash vs SDPA flash 1.08-1.31 (threshold 1.0): the kernel is autotuned per process (FLASH_TILES);
  inf21 GQA decode kernel 2.62-3.25 and one 2.16 vs MHA SDPA, the naive kernel-per-query-head 2.01-2.17
        (threshold 2.5): the gap between them is too narrow for the 20% rule;
  inf14 W8A8 1.26-1.42 in the test's timing, 1.75 with do_bench: the call's host time (250 us to return,
        bf16 43 us) is inside the test's synchronized timing.
This script measures, in that order:
  1. inf21: the reference's and the naive's decode kernel over tile (block_s), warps, stages and programs
     per SM, with do_bench, then the best few with the test's own timing (time_gqa_decode);
  2. inf20: each head-dim-128 tile of FLASH_TILES alone against SDPA flash at the test's shape, then which
     tile the autotuner picks in three fresh processes (and the test's compare in each);
  3. inf14: where the W8A8 call's host time goes.
Predictions (before the run): inf21's best config reaches >= 3.6x (0.42 ms, 2.6 TB/s) where the default
gives ~3.0x, and the naive stays <= 2.2x; inf20's tiles differ by >= 10% and the autotuner's pick differs
between processes; inf14's host time is mostly get_device_properties/capability and set_allocator (cacheable).
Results (H100, session 10, this script's first run; docs/thresholds.md, session 10):
  inf21: MHA SDPA 1.348 ms (3.0 TB/s). The reference 0.358-0.534 ms over 54 configs, 64 keys/4 warps/3 stages/
        4 per SM 0.388 ms (3.48x), the best 0.358-0.359 ms (3.75-3.76x: 2.99 TB/s, the copy ceiling). In the
        test's timing: 3.06-3.09x for that default, 3.24-3.28x for 32 keys/4/3/2 per SM (now the default).
        The naive 0.49-1.21 ms (1.11-2.75x); its default 2.05-2.08x in the test's timing, its best 2.48x.
        The test's timing adds ~70 us of host work (two launches, four allocations) to the kernel's 0.36 ms.
  inf20: SDPA flash 0.520 ms; the tiles 0.336-0.412 ms (1.26-1.54x) and one at 0.857 ms (128x64, 4 warps:
        0.61x); the autotuner picked 64x64/4 in two processes (compare 1.31x, 1.33x), 128x64/8 in one (1.20x).
  inf14: host time per call 108 us (Triton's launch alone 41 us; device properties 4 + capability 5, checks
        3, scale casts 4.5, torch.empty 4.3, set_allocator 0.4); F.linear bf16 43.5 us.
Run from the repository root on the GPU machine: python docs/perf/kernel_sweep.py [inf21|inf20|inf14|pick]...
"""
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("LAB_IMPL", "solutions")
sys.path.insert(0, ".")

import torch                                        # noqa: E402
import torch.nn.functional as F                     # noqa: E402
import triton                                       # noqa: E402
from triton.testing import do_bench                 # noqa: E402

SMS = torch.cuda.get_device_properties(0).multi_processor_count


class WithOptions:
    """A Triton kernel whose launches get extra launch options (num_warps, num_stages)."""

    def __init__(self, kernel, **options):
        self.kernel, self.options = kernel, options

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kwargs: launch(*args, **{**kwargs, **self.options})


def bench(fn) -> float:
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def inf21() -> None:
    import functools
    import importlib.util
    import tempfile
    from pathlib import Path

    import solutions.inf21.gqa_decode as ref
    from exercises.inf21.test_gqa import GPU_DECODE, time_gqa_decode
    from grading import planted
    root = planted.materialize(planted.find("inf21/kernel-per-query-head"), Path(tempfile.mkdtemp()))
    spec = importlib.util.spec_from_file_location("naive_inf21", root / "inf21" / "__init__.py",
                                                  submodule_search_locations=[str(root / "inf21")])
    sys.modules["naive_inf21"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["naive_inf21"])
    naive = importlib.import_module("naive_inf21.gqa_decode")          # the planted naive version
    s = GPU_DECODE
    b, h, hkv, d, n = s["batch"], s["num_heads"], s["num_kv_heads"], s["head_dim"], s["context"]
    q = torch.randn(b, h, 1, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, hkv, n, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    km = torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
    vm = torch.randn_like(km)
    t_mha = bench(lambda: F.scaled_dot_product_attention(q, km, vm))
    gb = 2 * b * hkv * n * d * 2 / 1e9
    print(f"inf21: MHA SDPA {t_mha:.3f} ms ({2 * b * h * n * d * 2 / 1e9 / t_mha:.0f} TB/s); GQA reads {gb:.2f} GB",
          flush=True)
    originals = {m: m.gqa_decode_split_kernel for m in (ref, naive)}

    def run(mod, heads, block_s, warps, stages, per_sm):
        mod.gqa_decode_split_kernel = WithOptions(originals[mod], num_warps=warps, num_stages=stages)
        splits = triton.cdiv(per_sm * SMS, b * heads)
        return functools.partial(mod.gqa_decode_triton, block_s=block_s, num_splits=splits)

    rows = []
    for name, mod, heads in (("ref", ref, hkv), ("naive", naive, h)):
        for block_s in (32, 64, 128):
            for warps in (4, 8):
                for stages in (2, 3, 4):
                    for per_sm in (2, 4, 8):
                        if name == "naive" and (block_s, per_sm) not in ((64, 4), (128, 4), (32, 4), (32, 2)):
                            continue
                        try:
                            fn = run(mod, heads, block_s, warps, stages, per_sm)
                            t = bench(lambda: fn(q, k, v))
                        except Exception as error:          # out of resources: say so, go on
                            print(f"  {name} s{block_s} w{warps} st{stages} p{per_sm}: {type(error).__name__}")
                            continue
                        rows.append((name, t, block_s, warps, stages, per_sm))
                        print(f"  {name:5s} block_s {block_s:3d} warps {warps} stages {stages} per_sm {per_sm}: "
                              f"{t:.3f} ms  {gb / t:.2f} TB/s  {t_mha / t:.2f}x MHA", flush=True)
        mod.gqa_decode_split_kernel = originals[mod]
    for name in ("ref", "naive"):
        best = sorted(r for r in rows if r[0] == name)
        best = sorted(best, key=lambda r: r[1])[:3]
        print(f"inf21 {name}: best {[(r[2], r[3], r[4], r[5], round(t_mha / r[1], 2)) for r in best]}")
    # the test's own timing for the default, the reference's best three and the naive's best
    ref_best = sorted((r for r in rows if r[0] == "ref"), key=lambda r: r[1])[:3]
    naive_best = sorted((r for r in rows if r[0] == "naive"), key=lambda r: r[1])[:1]
    cases = [("ref default", ref, hkv, 32, 4, 3, 2), ("ref session 9", ref, hkv, 64, 4, 3, 4)] + \
            [("ref", ref, hkv, *r[2:]) for r in ref_best] + \
            [("naive default", naive, h, 32, 4, 3, 2)] + [("naive", naive, h, *r[2:]) for r in naive_best]
    for label, mod, heads, *config in cases:
        fn = run(mod, heads, *config)
        ratios = [time_gqa_decode(**s, device="cuda", dtype=torch.bfloat16, threshold=2.5,
                                  attention=fn).ratio for _ in range(3)]
        print(f"inf21 test timing, {label} {config}: {' '.join(f'{x:.2f}' for x in ratios)}", flush=True)
        mod.gqa_decode_split_kernel = originals[mod]


def inf20() -> None:
    import math

    from torch.nn.attention import SDPBackend, sdpa_kernel

    import solutions.inf20.flash_attention as fa
    from exercises.inf20.test_flash_attention import SPEED_SHAPE
    batch, heads, n, d = SPEED_SHAPE
    q, k, v = (torch.randn(*SPEED_SHAPE, device="cuda", dtype=torch.bfloat16) for _ in range(3))

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    t_sdpa = bench(sdpa)
    print(f"inf20: SDPA flash {t_sdpa:.3f} ms at {SPEED_SHAPE} causal", flush=True)
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, n, device="cuda", dtype=torch.float32)
    args = (q, k, v, out, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
            heads, n, n, fa.LOG2_E / math.sqrt(d))
    for bm, bn, w, st in fa.FLASH_TILES[d]:
        grid = (triton.cdiv(n, bm), batch * heads)
        t = bench(lambda: fa.flash_attention_kernel[grid](*args, HEAD_DIM=d, IS_CAUSAL=True, BLOCK_M=bm,
                                                          BLOCK_N=bn, num_warps=w, num_stages=st))
        print(f"  tile {bm}x{bn} warps {w} stages {st}: {t:.3f} ms  {t_sdpa / t:.2f}x SDPA flash", flush=True)


def pick() -> None:
    """One fresh process: the autotuner's tile for the test's shape, and the test's compare."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import solutions.inf20.flash_attention as fa
    from exercises.inf20.test_flash_attention import SPEED_SHAPE, check_timed_output, make_speed_inputs
    from lab.timing import compare
    gen = torch.Generator(device="cuda").manual_seed(0)

    def sdpa_flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    result = compare(lambda q, k, v: fa.flash_attention(q, k, v, causal=True), sdpa_flash, threshold=1.0,
                     make_inputs=lambda: make_speed_inputs(gen), check=check_timed_output, what="inf20")
    best = fa.flash_attention_kernel_tuned.best_config
    print(f"inf20 autotuned pick: {best.kwargs} warps {best.num_warps} stages {best.num_stages}; "
          f"the test's compare {result.ratio:.2f}x", flush=True)


def inf14() -> None:
    import solutions.inf14.int8_matmul as mm
    from exercises.inf14.test_int8_matmul import W8A8_SHAPE, w8a8_speed_inputs
    m, k, n = W8A8_SHAPE
    wq, w_scale, _, fresh = w8a8_speed_inputs(m, k, n, "cuda")
    xq, x_scale, _ = fresh()
    for _ in range(3):
        mm.w8a8_matmul_triton(xq, x_scale, wq, w_scale)
    torch.cuda.synchronize()

    def host(label, fn, calls=30):
        times = []
        for _ in range(calls):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        print(f"inf14 host: {label:48s} median {statistics.median(times) * 1e6:7.1f} us", flush=True)

    host("w8a8_matmul_triton", lambda: mm.w8a8_matmul_triton(xq, x_scale, wq, w_scale))
    host("torch.cuda.get_device_properties", lambda: torch.cuda.get_device_properties(xq.device))
    host("torch.cuda.get_device_capability", lambda: torch.cuda.get_device_capability(xq.device))
    host("triton.set_allocator", lambda: triton.set_allocator(mm._tensor_descriptor_scratch))
    host("_check_w8a8_args", lambda: mm._check_w8a8_args(xq, x_scale, wq, w_scale))
    host("scales .float().reshape().contiguous()", lambda: (x_scale.float().reshape(-1).contiguous(),
                                                           w_scale.float().contiguous()))
    host("torch.empty out", lambda: torch.empty(m, n, device="cuda", dtype=torch.bfloat16))
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    xs, ws = x_scale.float().reshape(-1).contiguous(), w_scale.float().contiguous()
    args = (xq, xs, wq, ws, out, m, n, k, xq.stride(0), wq.stride(0), out.stride(0))
    tiles = triton.cdiv(m, 128) * triton.cdiv(n, 256)
    host("the persistent kernel's launch alone", lambda: mm._w8a8_persistent_kernel[(min(SMS, tiles),)](
        *args, NUM_SMS=SMS, **mm.PERSISTENT_TILE))
    host("F.linear bf16", lambda: F.linear(torch.empty(m, k, device="cuda", dtype=torch.bfloat16),
                                           torch.empty(n, k, device="cuda", dtype=torch.bfloat16)))


if __name__ == "__main__":
    parts = sys.argv[1:] or ["inf14", "inf20", "pick", "inf21"]
    for part in parts:
        if part == "pick" and len(sys.argv) == 1 or part == "picks":
            for _ in range(3):
                subprocess.run([sys.executable, __file__, "pick"], check=False)
            continue
        started = time.perf_counter()
        try:
            globals()[part]()
        except Exception as error:
            print(f"{part} failed: {type(error).__name__}: {error}", flush=True)
        print(f"[{part}: {time.perf_counter() - started:.0f} s]", flush=True)
