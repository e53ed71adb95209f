"""inf13 · The lab's fast batch-1 decoder on a GPU: tokens/s and memory-bandwidth utilization (MBU).

    python -m lab.decode_bench                     # yours: your inf10 KVCache and inf13 decode step
    python -m lab.decode_bench --impl solutions    # the reference
    python -m lab.decode_bench --shape llama-3.2-1b --variants lab-eager,lab-compiled

Batch 1, a Llama-3-8B shape in bf16 with random weights (they run at the speed of trained ones):
  lab-eager     the lab model, one eager decode step per token (make_decode_step, not compiled)
  lab-compiled  the same step compiled with CUDA graphs: compile_decode_step(step, "reduce-overhead")
  lab-gemv      lab-compiled with every projection written as multiply-and-sum, which Inductor turns
                into bandwidth-bound reduction kernels (cuBLAS GEMV is slow at M = 1 on small matrices)
  lab-fused     lab-gemv over fused projections (model.fuse_projections: one qkv and one gate-up matmul
                per layer, as vLLM and gpt-fast store them): fewer, larger reductions
  lab-triton    lab-fused with every projection and the LM head a Triton GEMV (docs/perf/gemv_kernel.py; in an
                instructor's checkout only), each matrix shape's tile, warps and K split tuned here first
  lab-triton-attn  lab-triton with each layer's RoPE, cache write and attention in one Triton launch
                (docs/perf/decode_attention.py) instead of four kernels (RoPE and the write, cuDNN's attention and
                two kernels around it)
  lab-triton-fused  lab-triton-attn with each layer's RMSNorms, residual adds and silu(gate) * up done inside its
                four GEMVs (gemv_kernel's fused forms): about three kernels a layer fewer
  hf-eager      transformers' LlamaForCausalLM on the same weights: `generate` (includes its prefill)
  hf-compiled   transformers with a static cache and its forward compiled "reduce-overhead" (opt-in)
MBU = bytes one step must read (every weight but the embedding table, plus the KV cache so far)
      x tokens/s / the copy bandwidth measured now (read + write, lab.hardware.measure_copy_bandwidth).
Each variant prints a line as it finishes; compiled variants are skipped once `--budget-s` is near.
`--profile N` then profiles N decode steps of each lab variant (torch.profiler; CUDA graph replays included)
and prints where a step's time goes: its kernels grouped by name (count and microseconds per step), and their
sum against the step's wall time (the rest is the device idle between kernels: launch gaps, the host).
Variants run in the order of VARIANTS whatever order they are named in: lab-gemv, lab-fused and the lab-triton
variants rewrite the model in place (lab/decode_variants.py) and hf-compiled replaces transformers' forward, so
each of them runs after the variants it would change.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, TypeVar

import torch

from lab.cache import StaticCache
from lab.cli import check_device, positive_float, positive_int, use_impl
from lab.config import SHAPES
from lab.hardware import measure_copy_bandwidth, synchronize
from lab.impl import Topic
from lab.decode_variants import (MulSumLinear, TritonGemvLinear, use_decode_attention, use_fused_layers,
                                 use_triton_gemv)
from lab.model import StaticCacheProtocol
from lab.weights import random_model

VARIANTS = ("lab-eager", "lab-compiled", "hf-eager", "hf-compiled", "lab-gemv", "lab-fused", "lab-triton",
            "lab-triton-attn", "lab-triton-fused")  # run order
DEFAULT_VARIANTS = "lab-eager,hf-eager,lab-fused"
FIRST_COMPILE_GUESS_S = 120      # before any compile has been timed here (gpt-fast's 8B on the H200: 107 s)


class StaticModeCache:
    """inf10's preallocated KVCache buffers driven in lab.model's static mode (write at cache_position,
    return the whole buffers), which is what a compiled step needs."""

    def __init__(self, kv_cache):
        self.k, self.v, self.max_len = kv_cache.k, kv_cache.v, kv_cache.max_len

    def update(self, layer_idx, k, v, cache_position):
        self.k[layer_idx].index_copy_(2, cache_position, k)
        self.v[layer_idx].index_copy_(2, cache_position, v)
        return self.k[layer_idx], self.v[layer_idx]


def step_bytes(model, context_len: int) -> int:
    """Bytes one batch-1 decode step must read: weights but the (untied) embedding table, and the KV cache."""
    config = model.config
    weights = model.weight_bytes()
    if not config.tie_word_embeddings:
        weights -= model.embed_tokens.weight.numel() * model.embed_tokens.weight.element_size()
    kv = 2 * config.num_layers * config.kv_size * context_len * model.embed_tokens.weight.element_size()
    return weights + kv


T = TypeVar("T")


def timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median seconds of `repeats` synchronized calls of fn(), and the last result."""
    times: list[float] = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        out = fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def kernel_table(prof, steps: int, device_type: str) -> list[tuple[str, int, float]]:
    """[(kernel or op name, calls per step, microseconds per step)] from a torch.profiler run of `steps`
    decode steps, slowest first: the device's kernels on a GPU, the operators' own time on a CPU."""
    rows = []
    for item in prof.key_averages():
        if device_type == "cuda":
            us = getattr(item, "self_device_time_total", None)
            if us is None:
                us = getattr(item, "self_cuda_time_total", 0.0)
            if not us or item.device_type != torch.autograd.DeviceType.CUDA:
                continue
        else:
            us = item.self_cpu_time_total
            if not us or item.key.startswith("ProfilerStep"):
                continue
        rows.append((item.key, round(item.count / steps), us / steps))
    return sorted(rows, key=lambda r: -r[2])


def profile_report(name: str, rows: list[tuple[str, int, float]], wall_us: float, what: str, top: int = 20) -> str:
    """The profile of one variant as text: the step's `what` (kernels, or operators on a CPU) against its wall
    time, then the top ones."""
    total = sum(us for _, _, us in rows)
    lines = [f"profile of {name}: {sum(c for _, c, _ in rows)} {what} a step, {total:,.0f} us of them against "
             f"{wall_us:,.0f} us of wall time ({total / wall_us:.0%} busy)",
             f"| {what[:-1]} | per step | us per step | share |", "|---|---|---|---|"]
    for key, count, us in rows[:top]:
        lines.append(f"| {key[:90]} | {count} | {us:,.1f} | {us / total:.1%} |")
    return "\n".join(lines)


def lab_variant(model, prompt, new_tokens: int, mode: str | None, repeats: int, profile_steps: int = 0) -> dict:
    """Prefill eagerly, then greedy-decode `new_tokens` with the (compiled) step; time the decode (and profile
    `profile_steps` more steps when asked: `profile`, the kernel table)."""
    inf10, inf13 = Topic("inf10"), Topic("inf13")
    weight, max_len = model.embed_tokens.weight, prompt.shape[1] + new_tokens + 1
    cache: StaticCacheProtocol
    try:
        cache = StaticModeCache(inf10.kv_cache.KVCache(model.config, 1, max_len, weight.dtype, weight.device))
    except NotImplementedError:                   # inf10 not written yet: the lab's cache, same buffers
        cache = StaticCache(model.config, 1, max_len, weight.dtype, weight.device)
    with torch.no_grad():
        logits = model(prompt, cache=cache, cache_position=torch.arange(prompt.shape[1], device=prompt.device))
    first = logits[:, -1].argmax(-1, keepdim=True)
    step = inf13.decode_step.make_decode_step(model, cache)
    if mode is not None:
        step = inf13.decode_step.compile_decode_step(step, mode)
    start = time.perf_counter()
    for _ in range(3):                            # compile, CUDA-graph warm-up, record
        inf13.decode_step.greedy_decode(step, first, prompt.shape[1], 2)
    synchronize()
    compile_s = time.perf_counter() - start
    seconds, tokens = timed(lambda: inf13.decode_step.greedy_decode(step, first, prompt.shape[1], new_tokens),
                            repeats)
    row = {"tok_s": new_tokens / seconds, "compile_s": compile_s if mode else 0.0,
           "tokens": [int(first)] + tokens[0].tolist()}
    if profile_steps:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if weight.is_cuda else [])
        try:
            with profile(activities=activities) as prof:
                inf13.decode_step.greedy_decode(step, first, prompt.shape[1], profile_steps)
                synchronize()
            row["profile"] = kernel_table(prof, profile_steps, weight.device.type)
        except Exception as e:                  # the profiler is a diagnosis: the timing above stands without it
            print(f"  profile of this variant failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
    return row


def hf_llama(model):
    """transformers' LlamaForCausalLM sharing the lab model's weight tensors (no copy)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    c = model.config
    rope = {"rope_type": "default", "rope_theta": c.rope_theta, **(c.rope_scaling or {})}
    hf_config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim, max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings, rope_parameters=rope, bos_token_id=None,
        eos_token_id=None, pad_token_id=0)
    with torch.device("meta"):
        hf = LlamaForCausalLM(hf_config)
    state = {name if name == "lm_head.weight" else f"model.{name}": t for name, t in model.state_dict().items()}
    hf.load_state_dict(state, assign=True)
    device = model.embed_tokens.weight.device
    hf.model.rotary_emb = type(hf.model.rotary_emb)(hf_config).to(device)   # its buffers are not in the state
    if c.tie_word_embeddings:
        hf.tie_weights()
    return hf.eval()


def hf_variant(hf, prompt, new_tokens: int, compiled: bool, repeats: int) -> dict:
    def generate(n):
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                               do_sample=False, pad_token_id=0)
    if compiled:
        hf.generation_config.cache_implementation = "static"
        hf.forward = torch.compile(hf.forward, mode="reduce-overhead", fullgraph=True)
    start = time.perf_counter()
    for _ in range(3 if compiled else 1):
        generate(4)
    synchronize()
    compile_s = time.perf_counter() - start
    seconds, out = timed(lambda: generate(new_tokens), repeats)
    return {"tok_s": new_tokens / seconds, "compile_s": compile_s if compiled else 0.0,
            "tokens": out[0, prompt.shape[1]:].tolist()}


def report(name: str, row: dict, bytes_per_token: int, bandwidth: float, reference: list[int] | None) -> str:
    mbu = bytes_per_token * row["tok_s"] / bandwidth
    same = "" if reference is None else str(next((i for i, (a, b) in enumerate(zip(row["tokens"], reference))
                                                  if a != b), min(len(row["tokens"]), len(reference))))
    return (f"| {name:12s} | {row['tok_s']:8.1f} | {1e3 / row['tok_s']:7.2f} | {mbu:6.1%} | "
            f"{row['compile_s']:7.1f} | {same:>5s} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.decode_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default=os.environ.get("LAB_IMPL", "exercises"),
                        help="exercises (yours, the default), solutions, or a folder laid out like them")
    parser.add_argument("--shape", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--prompt-len", type=positive_int, default=16)
    parser.add_argument("--new-tokens", type=positive_int, default=128,
                        help="decode steps timed (hf: generated tokens)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--budget-s", type=positive_float, default=280, help="skip compiled variants past this")
    parser.add_argument("--profile", type=positive_int, default=0, metavar="N",
                        help="then profile N decode steps of each lab variant: where a step's time goes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    named = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in named if v not in VARIANTS]
    if unknown or not named:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}" if unknown
                     else f"--variants names none; choose from {', '.join(VARIANTS)}")
    variants = sorted(set(named), key=VARIANTS.index)
    use_impl(parser, args.impl)
    began = time.perf_counter()
    model = random_model(args.shape, torch.bfloat16, args.device)
    bandwidth = measure_copy_bandwidth(args.device)
    prompt = torch.randint(model.config.vocab_size, (1, args.prompt_len), device=args.device)
    bytes_per_token = step_bytes(model, args.prompt_len + args.new_tokens // 2)
    print(f"{args.shape} bf16 on {torch.cuda.get_device_name() if args.device == 'cuda' else args.device}, "
          f"torch {torch.__version__}, impl {os.environ['LAB_IMPL']}: {bytes_per_token / 1e9:.2f} GB read per "
          f"token, copy bandwidth {bandwidth / 1e9:,.0f} GB/s -> ceiling {bandwidth / bytes_per_token:,.0f} tok/s")
    if variants != named:
        print(f"running in the order {', '.join(variants)} (lab-gemv, lab-fused and the lab-triton variants "
              "rewrite the model in place, hf-compiled replaces transformers' forward)")
    print("| variant      |    tok/s | ms/tok  |   MBU  | compile | same* |\n|---|---|---|---|---|---|", flush=True)
    reference, hf, compile_guess_s = None, None, FIRST_COMPILE_GUESS_S
    profiles: list[str] = []
    for name in variants:
        spent = time.perf_counter() - began
        compiles = name != "lab-eager" and name != "hf-eager"
        if compiles and spent + 1.5 * compile_guess_s > args.budget_s:
            print(f"| {name:12s} | skipped: {spent:.0f} s spent, a compile may take {1.5 * compile_guess_s:.0f} s "
                  f"more, --budget-s {args.budget_s:.0f} |", flush=True)
            continue
        if compiles:
            # each compiled variant traces the same step function over a rewritten model: start from no cached
            # traces, so no variant meets dynamo's recompile limit (8 per function) and silently runs eager
            torch._dynamo.reset()
        if name.startswith("hf"):
            hf = hf or hf_llama(model)
            row = hf_variant(hf, prompt, min(args.new_tokens, 64), name == "hf-compiled", args.repeats)
        elif name.startswith("lab-triton"):
            if args.device != "cuda":
                print(f"| {name:12s} | skipped: a Triton GEMV needs a CUDA GPU |", flush=True)
                continue
            try:
                torch._inductor.config.coordinate_descent_tuning = True
                if not isinstance(model.lm_head, TritonGemvLinear):     # lab-triton has not swapped them
                    use_triton_gemv(model, bandwidth)
                if name != "lab-triton" and "attend" not in vars(model.layers[0].self_attn):  # nor lab-triton-attn
                    use_decode_attention(model, tune_at=(args.prompt_len + args.new_tokens + 1,
                                                         args.prompt_len + args.new_tokens // 2))
                if name == "lab-triton-fused":
                    use_fused_layers(model)
                row = lab_variant(model, prompt, args.new_tokens, "reduce-overhead", args.repeats, args.profile)
            except Exception as e:              # a measurement tool's variant: say why, keep the others' rows
                print(f"| {name:12s} | failed: {type(e).__name__}: {str(e)[:300]} |", flush=True)
                continue
        else:
            if name in ("lab-gemv", "lab-fused"):
                torch._inductor.config.coordinate_descent_tuning = True
                if name == "lab-fused":
                    model.fuse_projections()
                model.replace_linears(lambda _, linear: MulSumLinear(linear))   # nn.Linear children only
            mode = None if name == "lab-eager" else "reduce-overhead"
            row = lab_variant(model, prompt, args.new_tokens, mode, args.repeats, args.profile)
        print(report(name, row, bytes_per_token, bandwidth, reference), flush=True)
        if row.get("profile") is not None:
            profiles.append(profile_report(name, row["profile"], 1e6 / row["tok_s"],
                                           "kernels" if args.device == "cuda" else "operators"))
        reference = reference or row["tokens"]
        if row["compile_s"]:
            compile_guess_s = row["compile_s"]              # the next compile takes about as long
    print(f"* tokens equal to the first variant's before the first difference (bf16 greedy on random "
          f"weights parts at near-ties). Published: gpt-fast 184 tok/s = 65.5% on an H200 of this workplace, "
          f"~80% on an H100 (torch 2.11). "
          f"Total {time.perf_counter() - began:.0f} s.")
    for text in profiles:
        print("\n" + text)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except NotImplementedError as e:          # the student's stubs: say so, not a traceback
        print(f"python -m lab.decode_bench: not started: {e} (or pass --impl solutions for the reference)")
        raise SystemExit(2) from None
