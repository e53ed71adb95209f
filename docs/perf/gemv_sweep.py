"""Issue 10: how near the copy bandwidth batch-1 decode's matrix-vector products can run on this card.

lab.decode_bench's lab-fused (Inductor's multiply-and-sum reductions under CUDA graphs) reads 87.0% of the
measured copy bandwidth on an H100 (session 13) but 67.1% on an H200 (session 14: 187.5 tok/s, 4,196 GB/s copy;
gpt-fast 65.5% there). This script times each weight matrix of one Llama-3-8B decode step alone, with
`triton.testing.do_bench` (which flushes the L2 before every call, as a decode step meets each layer's
weights cold): cuBLAS `F.linear`, the Inductor reduction lab-fused compiles, and gemv_kernel.py's Triton kernel over
a grid of row blocks, K blocks, warps, stages and K splits. It prints each matrix's GB/s as a fraction of the
copy bandwidth, and what a step made of the best of each would take: the 32 layers' qkv, o, gate-up and down
plus the LM head, next to the step's bytes at the copy bandwidth (the launches, norms, RoPE and attention come
on top, ~0.75 ms on the H100 of session 13).

Prediction (before the first run): on the H200, cuBLAS reads 30-45% of the copy bandwidth on qkv and o and
80-95% on gate-up, down and the head (measured-here.md: 1.25-1.8 TB/s and 3.5-4.2 TB/s); Inductor's reductions
75-80% on every matrix; the best Triton configuration >= 90% on the large matrices and >= 80% on qkv and o
with a K split, so a step of them alone would reach ~88% and lab-fused with them ~80%.
Each matrix is also timed in its lab-triton-fused form with its best configuration (qkv and gate-up normalising
x first, o adding a residual, down taking silu(gate) * up and adding one): predicted within 1 us of the plain
GEMV on qkv, o and down, and 1-5 us over it on gate-up, whose 1,800-7,200 programs each read all of x for
its mean square.
Prediction for the K split's two ways of meeting its sums (session 15, before any run): reduce="last" (one
launch) beats reduce="atomic" (zeros, kernel, cast: three) by 2-4 us on qkv, o and down, a tenth to a quarter of
an o projection's ~8 us at the copy bandwidth; the best configuration of those three is a "last" one.

    python docs/perf/gemv_sweep.py [quick|full]      # from the repository root on the GPU machine (quick: ~2 min)
"""
import os
import sys

os.environ.setdefault("LAB_IMPL", "solutions")
sys.path[:0] = [".", "docs/perf"]

import torch                                        # noqa: E402
import torch.nn.functional as F                     # noqa: E402
from triton.testing import do_bench                 # noqa: E402

from lab.config import get_shape                    # noqa: E402
from gemv_kernel import QUICK_GRID, REDUCTIONS, configs, counters_for, gemv, label, time_configs   # noqa: E402
from lab.hardware import measure_copy_bandwidth     # noqa: E402

GRIDS = {
    "quick": QUICK_GRID,
    "full": dict(block_n=(2, 4, 8, 16, 32), block_k=(128, 256, 512, 1024), num_warps=(2, 4, 8), num_stages=(1, 2, 3, 4),
                 split_k=(1, 2, 4, 8), reduce=REDUCTIONS),
}


def matrices() -> dict[str, tuple[int, int, int]]:
    """name -> (N, K, how many a decode step reads) for Llama-3-8B with fused qkv and gate-up (as lab-fused)."""
    c = get_shape("llama-3-8b")
    qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
    return {"qkv": (qkv, c.hidden_size, c.num_layers), "o": (c.hidden_size, c.num_heads * c.head_dim, c.num_layers),
            "gate-up": (2 * c.intermediate_size, c.hidden_size, c.num_layers),
            "down": (c.hidden_size, c.intermediate_size, c.num_layers), "lm-head": (c.vocab_size, c.hidden_size, 1)}


# lab-triton-fused's forms of each matrix (gemv_kernel.gemv's keyword arguments): its neighbours' work inside it
FUSED = {
    "qkv": lambda n, k: {"norm_weight": torch.ones(k, device="cuda", dtype=torch.bfloat16)},
    "o": lambda n, k: {"residual": torch.randn(n, device="cuda", dtype=torch.bfloat16)},
    "gate-up": lambda n, k: {"norm_weight": torch.ones(k, device="cuda", dtype=torch.bfloat16)},
    "down": lambda n, k: {"silu_mul": True, "residual": torch.randn(n, device="cuda", dtype=torch.bfloat16)},
}


def inductor_gemv():
    torch._inductor.config.coordinate_descent_tuning = True       # as lab.decode_bench's lab-fused

    @torch.compile(dynamic=False)
    def mul_sum(weight, x):
        return (x.unsqueeze(-2).float() * weight.float()).sum(-1).to(x.dtype)
    return mul_sum


def main(mode: str) -> int:
    if mode not in GRIDS:
        print(f"usage: python docs/perf/gemv_sweep.py [{'|'.join(GRIDS)}]", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gemv_sweep needs a CUDA GPU", file=sys.stderr)
        return 2
    copy = measure_copy_bandwidth("cuda")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}: copy bandwidth {copy / 1e9:,.0f} GB/s, mode {mode}")
    mul_sum, grid = inductor_gemv(), GRIDS[mode]
    best: dict[str, dict[str, float]] = {}
    for name, (n, k, count) in matrices().items():
        weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        nbytes = weight.numel() * weight.element_size()
        rows = {"cuBLAS": do_bench(lambda: F.linear(x[None], weight)),
                "Inductor": do_bench(lambda: mul_sum(weight, x))}
        candidates = configs(n, grid)
        timed = time_configs(weight, x, candidates, say=lambda line: print(f"  {name} {line}"))
        top = timed[:3]
        rows.update({f"Triton {label(config)}": ms for config, ms in top})
        if top and name in FUSED:                   # what lab-triton-fused adds to the best configuration
            fused = FUSED[name](n, k)
            x_in = torch.randn(2 * k, device="cuda", dtype=torch.bfloat16) if fused.get("silu_mul") else x
            counters = counters_for(n, top[0][0]["block_n"], "cuda")
            rows[f"Triton {label(top[0][0])} + {'+'.join(fused)}"] = do_bench(
                lambda: gemv(weight, x_in, counters=counters, **top[0][0], **fused), warmup=10, rep=50)
        print(f"\n{name}: N={n} K={k}, {nbytes / 1e6:.1f} MB, x{count} per step; {len(timed)} of {len(candidates)} "
              "Triton configs ran correctly")
        print("| variant | us | GB/s | of copy |\n|---|---|---|---|")
        for variant, ms in rows.items():
            print(f"| {variant} | {ms * 1e3:.1f} | {nbytes / ms / 1e6:,.0f} | {nbytes / ms / 1e6 / (copy / 1e9):.1%} |")
        best[name] = {"cuBLAS": rows["cuBLAS"], "Inductor": rows["Inductor"],
                      "Triton": top[0][1] if top else float("nan"), "count": count, "bytes": nbytes}
    total_bytes = sum(b["bytes"] * b["count"] for b in best.values())
    floor_ms = total_bytes / copy * 1e3
    print(f"\nA step's matrices: {total_bytes / 1e9:.2f} GB, {floor_ms:.2f} ms at the copy bandwidth")
    print("| each matrix by | ms per step | of copy bandwidth |\n|---|---|---|")
    for family in ("cuBLAS", "Inductor", "Triton"):
        ms = sum(b[family] * b["count"] for b in best.values())
        print(f"| {family} | {ms:.2f} | {floor_ms / ms:.1%} |")
    ms = sum(min(b["cuBLAS"], b["Inductor"], b["Triton"]) * b["count"] for b in best.values())
    print(f"| the best of the three per matrix | {ms:.2f} | {floor_ms / ms:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "quick"))
