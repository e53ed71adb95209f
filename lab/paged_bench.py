"""inf31 · Paged decode attention on a GPU: time, bandwidth and the fraction of copy bandwidth it reaches.

    python -m lab.paged_bench                      # yours: exercises/inf31 paged_attention_triton
    python -m lab.paged_bench --impl solutions     # the reference
    python -m lab.paged_bench --batch 16,32 --context 4096,8192 --block-size 16

A Llama-3-8B attention shape (32 query heads, 8 KV heads, head_dim 128) in bf16; every sequence holds
`context` tokens in blocks scattered at random over the pool. One decode step reads each sequence's K and V
once: bytes = 2 * batch * context * num_kv_heads * head_dim * 2. For each (batch, context) it prints:
  paged-triton  your paged_attention_triton (the kernel reads through the block table)
  paged-torch   your paged_attention (PyTorch: gathers the slots, then attends; the naive baseline)
  sdpa          torch SDPA decode (flash backend, enable_gqa) on the same K/V stored contiguously
with milliseconds, GB/s and the fraction of the device-to-device copy bandwidth measured now
(lab.hardware.measure_copy_bandwidth, read + write counted). FlashInfer reports paged decode near 100%
of it; the reference aims at >= 80% at batch >= 16 and context >= 4k.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from lab.hardware import measure_copy_bandwidth
from lab.cli import int_list, positive_int, use_impl
from lab.impl import Topic, impl_root
from lab.timing import median_seconds

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM = 32, 8, 128                      # Llama-3-8B attention


def paged_inputs(batch: int, context: int, block_size: int, dtype=torch.bfloat16, seed: int = 0):
    """(k_cache, v_cache, block_tables, context_lens, k, v): the same K/V paged (shuffled blocks) and contiguous."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shape = (batch, NUM_KV_HEADS, context, HEAD_DIM)
    k = torch.randn(shape, generator=gen, device="cuda", dtype=dtype)
    v = torch.randn(shape, generator=gen, device="cuda", dtype=dtype)
    blocks_per_seq = -(-context // block_size)
    tables = torch.randperm(batch * blocks_per_seq, generator=gen, device="cuda").view(batch, blocks_per_seq)
    k_cache = torch.zeros(batch * blocks_per_seq, block_size, NUM_KV_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    pos = torch.arange(context, device="cuda")
    slots = (tables[:, pos // block_size] * block_size + pos % block_size).reshape(-1)       # [batch * context]
    k_cache.view(-1, NUM_KV_HEADS, HEAD_DIM)[slots] = k.transpose(1, 2).reshape(-1, NUM_KV_HEADS, HEAD_DIM)
    v_cache.view(-1, NUM_KV_HEADS, HEAD_DIM)[slots] = v.transpose(1, 2).reshape(-1, NUM_KV_HEADS, HEAD_DIM)
    lens = torch.full((batch,), context, device="cuda", dtype=torch.int32)
    return k_cache, v_cache, tables.int(), lens, k, v


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.paged_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default=None, help="exercises (default), solutions, or a folder like them")
    parser.add_argument("--batch", type=int_list, default="1,16,32")
    parser.add_argument("--context", type=int_list, default="1024,4096,8192")
    parser.add_argument("--block-size", type=positive_int, default=16)
    parser.add_argument("--rounds", type=positive_int, default=20)
    args = parser.parse_args(argv)
    use_impl(parser, args.impl)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (the kernel's correctness runs on a CPU through the tests' interpreter)")
    impl = Topic("inf31")
    copy_bw = measure_copy_bandwidth("cuda")
    print(f"implementation: {impl_root()} | {torch.cuda.get_device_name()} | copy bandwidth {copy_bw / 1e9:,.0f} GB/s "
          f"| {NUM_HEADS}/{NUM_KV_HEADS} heads, head_dim {HEAD_DIM}, bf16, block {args.block_size}")
    print(f"{'batch':>5} {'context':>7} {'variant':>13} {'ms':>8} {'GB/s':>7} {'of copy':>7} {'vs sdpa':>7}")
    for batch in args.batch:
        for context in args.context:
            print_rows(impl, batch, context, args.block_size, args.rounds, copy_bw)
            torch.cuda.empty_cache()                  # the inputs of print_rows are gone with its frame


def print_rows(impl: Topic, batch: int, context: int, block_size: int, rounds: int, copy_bw: float) -> None:
    """One table row per variant at one batch and context."""
    k_cache, v_cache, tables, lens, k, v = paged_inputs(batch, context, block_size)
    nbytes = 2 * k.numel() * k.element_size()
    gen = torch.Generator(device="cuda").manual_seed(1)

    def make_q():
        return (torch.randn(batch, NUM_HEADS, HEAD_DIM, generator=gen, device="cuda", dtype=torch.bfloat16),)

    variants = {
        "sdpa": lambda q: F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True),
        "paged-triton": lambda q: impl.paged_attention.paged_attention_triton(q, k_cache, v_cache, tables, lens),
        "paged-torch": lambda q: impl.paged_attention.paged_attention(q, k_cache, v_cache, tables, lens),
    }
    sdpa_s = None
    for name, fn in variants.items():
        try:
            seconds = median_seconds(fn, make_q, rounds=rounds)
        except (NotImplementedError, torch.OutOfMemoryError) as error:
            print(f"{batch:>5} {context:>7} {name:>13}   skipped: {str(error).splitlines()[0]}")
            continue
        sdpa_s = seconds if name == "sdpa" else sdpa_s
        vs = f"{sdpa_s / seconds:6.2f}x" if sdpa_s else "      -"
        print(f"{batch:>5} {context:>7} {name:>13} {seconds * 1e3:8.3f} {nbytes / seconds / 1e9:7,.0f} "
              f"{nbytes / seconds / copy_bw:6.0%} {vs:>7}", flush=True)


if __name__ == "__main__":
    main()
