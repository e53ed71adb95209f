# %% [markdown]
# # inf00 · Inference basics — run, time and count your generate loop
#
# This notebook runs **your** code from `exercises/inf00/`.
# It loads the real model, generates with your loop, times prefill
# apart from decode, and puts the measurements beside the FLOP and byte counts you wrote.

# %%
import os
import time

import matplotlib.pyplot as plt
import torch

from lab.config import SHAPES
from lab.impl import Topic, impl_root
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))
impl = Topic("inf00")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name, f"{model.weight_bytes() / 1e6:.0f} MB fp32")

# %% [markdown]
# ## 1. Generate
# Your `greedy_generate` on a chat prompt. Without a cache every step re-reads the whole sequence.

# %%
prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
ids = tok.encode(prompt)
new = impl.generate.greedy_generate(model, ids, max_new_tokens=16, eos_token_id=tok.eos_token_id)
print(repr(tok.decode(new)))

# %% [markdown]
# ## 2. Prefill vs decode, timed apart
# `timed_generate` returns the time to first token and each decode step. Without a cache, step *t*
# runs over `P + t` tokens: watch the step time grow with the sequence.

# %%
timing = impl.generate.timed_generate(model, ids, max_new_tokens=24)
print(f"TTFT {timing.ttft_s * 1e3:.1f} ms for {len(ids)} prompt tokens; "
      f"decode {timing.decode_tokens_per_s:.1f} tokens/s")
plt.figure(figsize=(6, 3))
plt.plot(range(1, len(timing.step_s) + 1), [s * 1e3 for s in timing.step_s], marker="o", label="decode step")
plt.axhline(timing.ttft_s * 1e3, color="gray", linestyle="--", label="TTFT (prefill)")
plt.xlabel("decode step"); plt.ylabel("ms"); plt.legend(); plt.title("no-cache decode: every step is a prefill")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. Counting: FLOPs, bytes, arithmetic intensity
# Your counts for the real model and for a Llama-3-8B shape, against the ridge of this machine (measured
# now) and of an H200 (measured by the lab: 4.3 TB/s, 673 TFLOP/s bf16).

# %%
from lab.hardware import peaks

c = impl.counts
here = peaks()
rows = []
for name in ("smollm2-135m", "llama-3-8b"):
    cfg = SHAPES[name]
    for label, flops, nbytes in [
        ("prefill 512", c.forward_flops(cfg, 512), c.prefill_bytes(cfg, 512)),
        ("decode @2048, batch 1", c.forward_flops(cfg, 1, 2048), c.decode_step_bytes(cfg, 2048)),
        ("decode @2048, batch 64", c.forward_flops(cfg, 1, 2048, 64), c.decode_step_bytes(cfg, 2048, 64)),
    ]:
        rows.append((name, label, flops, nbytes, c.arithmetic_intensity(flops, nbytes)))
        print(f"{name:14s} {label:24s} {flops / 1e9:10.1f} GFLOP {nbytes / 1e9:8.3f} GB "
              f"{rows[-1][-1]:8.1f} FLOP/B")
print(f"this machine ({here.device}): {here.copy_bytes_per_s / 1e9:.0f} GB/s, "
      f"{here.matmul_flops_per_s / 1e12:.2f} TFLOP/s {here.matmul_dtype} -> ridge {here.ridge_intensity:.0f} FLOP/B")

# %%
import numpy as np

ai = np.logspace(-1, 4, 200)
plt.figure(figsize=(6, 4))
for label, bw, fl in [("H200 (bf16)", 4.297e12, 673e12), (f"this machine ({here.matmul_dtype})",
                                                         here.copy_bytes_per_s, here.matmul_flops_per_s)]:
    plt.loglog(ai, np.minimum(fl, bw * ai) / 1e12, label=label)
for name, label, flops, nbytes, intensity in rows:
    if name == "llama-3-8b":
        plt.scatter([intensity], [min(673e12, 4.297e12 * intensity) / 1e12])
        plt.annotate(label, (intensity, min(673e12, 4.297e12 * intensity) / 1e12), fontsize=7)
plt.xlabel("arithmetic intensity (FLOP/byte)"); plt.ylabel("attainable TFLOP/s"); plt.legend(fontsize=8)
plt.title("roofline: Llama-3-8B phases on an H200"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Latency vs throughput over batch size
# One forward over a batch of sequences (32 tokens each, the last position's logits): larger batches
# share each weight read, so throughput climbs while each step's latency grows more slowly.

# %%
results = []
with torch.inference_mode():
    for batch in (1, 2, 4, 8, 16):
        x = torch.randint(model.config.vocab_size, (batch, 32))
        model(x, last_only=True)
        t0 = time.perf_counter()
        for _ in range(3):
            model(x, last_only=True)
        latency = (time.perf_counter() - t0) / 3
        results.append((batch, latency, batch / latency))
        print(f"batch {batch:2d}: {latency * 1e3:7.1f} ms per step, {batch / latency:7.1f} sequences/s")
plt.figure(figsize=(5, 3.5))
plt.plot([r[1] * 1e3 for r in results], [r[2] for r in results], marker="o")
for b, lat, thr in results:
    plt.annotate(f"B={b}", (lat * 1e3, thr), fontsize=8)
plt.xlabel("latency per step (ms)"); plt.ylabel("throughput (sequences/s)")
plt.title("latency vs throughput (CPU, no cache)"); plt.tight_layout(); plt.show()
