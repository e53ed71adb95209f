"""inf20 · TFLOP/s of your FlashAttention kernel beside torch SDPA's flash and cuDNN backends, same run.

    python -m lab.flash_bench                          # yours: exercises/inf20/flash_attention.py
    python -m lab.flash_bench --impl solutions         # the reference
    python -m lab.flash_bench --head-dim 64 --heads 16 --seq-lens 1024,4096 --variants yours,sdpa-flash

Forward pass only, bf16, batch x seq_len = --tokens (16k by default: batch 16 at 1k ... batch 1 at 16k), as
the FlashAttention papers measure. FLOPs = 4 * batch * heads * seq_len^2 * head_dim, halved when causal
(the work a causal kernel must do). Medians of --repeats synchronized calls after warm-up (which
includes your autotuning). Variants:
  yours         Topic("inf20").flash_attention.flash_attention (your Triton kernel)
  sdpa-flash    torch SDPA, FLASH_ATTENTION backend (FlashAttention-2 inside torch)
  sdpa-cudnn    torch SDPA, CUDNN_ATTENTION backend (cuDNN's fused attention; FlashAttention-3-class on Hopper)
  naive         lab.testing.naive_attention: scores in HBM (skipped past --naive-max tokens: its bf16 scores,
                mask fill, float32 softmax and bf16 probabilities take ~14 bytes per score at the peak)
A variant that fails (a backend missing on this card, out of memory) prints its error in its cell.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from lab.cli import int_list, positive_int, use_impl
from lab.impl import Topic
from lab.testing import naive_attention
from lab.timing import median_seconds

VARIANTS = ("yours", "sdpa-flash", "sdpa-cudnn", "naive")


def attention_flops(batch: int, num_heads: int, q_len: int, kv_len: int, head_dim: int, causal: bool) -> float:
    """Matmul FLOPs of the attention forward: Q K^T and P V, 2 * q_len * kv_len * head_dim each; causal half."""
    return 4 * batch * num_heads * q_len * kv_len * head_dim * (0.5 if causal else 1.0)


def variant_fn(name: str, causal: bool, seq_len: int, device: str):
    if name == "yours":
        impl = Topic("inf20")
        return lambda q, k, v: impl.flash_attention.flash_attention(q, k, v, causal=causal)
    if name == "naive":
        mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None] if causal else None
        return lambda q, k, v: naive_attention(q, k, v, mask)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = {"sdpa-flash": SDPBackend.FLASH_ATTENTION, "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION}[name]

    def sdpa(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return sdpa


def measure(name: str, batch: int, heads: int, seq_len: int, head_dim: int, causal: bool, repeats: int,
            device: str) -> str:
    """One table cell: TFLOP/s, or why not."""
    gen = torch.Generator(device=device).manual_seed(0)
    qkv = [torch.randn(batch, heads, seq_len, head_dim, generator=gen, device=device, dtype=torch.bfloat16)
           for _ in range(3)]
    try:
        fn = variant_fn(name, causal, seq_len, device)
        seconds = median_seconds(fn, lambda: tuple(qkv), warmup=3, rounds=repeats)
    except NotImplementedError as e:
        return f"not started ({e})"
    except Exception as e:                # a backend this card or build lacks, or out of memory
        return f"{type(e).__name__}: {str(e).splitlines()[0][:60] if str(e) else ''}"
    finally:
        qkv.clear()                       # free q, k, v before the next cell allocates its own
        if device == "cuda":
            torch.cuda.empty_cache()
    return f"{attention_flops(batch, heads, seq_len, seq_len, head_dim, causal) / seconds / 1e12:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.flash_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default=os.environ.get("LAB_IMPL", "exercises"),
                        help="exercises (yours, the default), solutions, or a folder laid out like them")
    parser.add_argument("--variants", default="yours,sdpa-flash,sdpa-cudnn", help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--seq-lens", type=int_list, default="1024,2048,4096,8192,16384")
    parser.add_argument("--tokens", type=positive_int, default=16384, help="batch = tokens // seq_len (at least 1)")
    parser.add_argument("--heads", type=positive_int, default=32)
    parser.add_argument("--head-dim", type=positive_int, default=128)
    parser.add_argument("--causal", default="both", choices=("both", "yes", "no"))
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--naive-max", type=positive_int, default=4096,
                        help="largest seq_len the naive variant runs at")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        parser.error(f"variants must be among {', '.join(VARIANTS)}, got {variants}")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (the kernel's correctness runs on a CPU through the tests' interpreter)")
    use_impl(parser, args.impl)
    causal_modes = {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]
    print(f"attention forward TFLOP/s, bf16, heads {args.heads}, head_dim {args.head_dim}, batch x seq_len = "
          f"{args.tokens}, on {torch.cuda.get_device_name()}, torch {torch.__version__}, impl {args.impl}")
    print("| causal | seq_len | batch | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for causal in causal_modes:
        for seq_len in args.seq_lens:
            batch = max(1, args.tokens // seq_len)
            cells = [measure(v, batch, args.heads, seq_len, args.head_dim, causal, args.repeats, "cuda")
                     if v != "naive" or seq_len <= args.naive_max else "skipped" for v in variants]
            print(f"| {'yes' if causal else 'no'} | {seq_len} | {batch} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
