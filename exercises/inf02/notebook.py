# %% [markdown]
# # inf02 · Prefill vs decode — TTFT, TBT, chunked prefill and the roofline
#
# This notebook runs **your** code from `exercises/inf02/`.
# It measures TTFT and TBT of the real model over prompt lengths, puts
# them beside the roofline's prediction for this machine, and checks chunked prefill against one shot.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from lab.cache import DynamicCache
from lab.config import SHAPES
from lab.hardware import Peaks, peaks
from lab.impl import Topic, impl_root
from lab.timing import median_seconds
from lab.weights import load_real_model

torch.manual_seed(0)
# One thread keeps timings steady on a shared or busy machine (two threads that must meet at every
# parallel region stall whenever one is descheduled); on a quiet machine of your own, try os.cpu_count().
torch.set_num_threads(1)
impl = Topic("inf02")
model = load_real_model().eval()
config = model.config
here = peaks()
print("implementation:", impl_root(), f"| this machine: {here.copy_bytes_per_s / 1e9:.1f} GB/s, "
      f"{here.matmul_flops_per_s / 1e9:.0f} GFLOP/s {here.matmul_dtype}")

# %% [markdown]
# ## 1. TTFT and TBT over prompt lengths
# Your `measure_latency`, with the lab's KV cache: TTFT should grow with the prompt, TBT stay flat.
# The dashed lines are the roofline floors of your `phase_estimate` on this machine's peaks (fp32).

# %%
prompt_lens = [32, 64, 128, 256]
ttft, tbt = [], []
impl.latency.measure_latency(model, list(range(100, 116)), 2, DynamicCache(config, 1, 18))      # warm-up
for n in prompt_lens:
    prompt = torch.randint(config.vocab_size, (n,)).tolist()
    t = impl.latency.measure_latency(model, prompt, 5, DynamicCache(config, 1, n + 5))
    ttft.append(t.ttft_s)
    tbt.append(float(np.median(t.tbt_s)))
    print(f"prompt {n:4d}: TTFT {t.ttft_s * 1e3:7.1f} ms, TBT {tbt[-1] * 1e3:6.1f} ms")
floor_ttft = [impl.roofline.phase_estimate(config, n, here, dtype_bytes=4).predicted_s for n in prompt_lens]
floor_tbt = [impl.roofline.phase_estimate(config, 1, here, past_len=n, dtype_bytes=4).predicted_s for n in prompt_lens]

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(prompt_lens, [t * 1e3 for t in ttft], marker="o", label="your TTFT")
axes[0].plot(prompt_lens, [t * 1e3 for t in floor_ttft], linestyle="--", label="roofline floor")
axes[1].plot(prompt_lens, [t * 1e3 for t in tbt], marker="o", label="your TBT")
axes[1].plot(prompt_lens, [t * 1e3 for t in floor_tbt], linestyle="--", label="roofline floor")
for ax, title in zip(axes, ["prefill: grows with the prompt", "decode: flat in the context"]):
    ax.set_xlabel("prompt / context tokens"); ax.set_ylabel("ms"); ax.set_title(title); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Chunked prefill: same result, bounded step size
# The logits of your chunked prefill against one forward, and the time of the whole prefill by chunk size
# (small chunks pay the per-forward overhead many times; an engine trades that for not stalling decodes).
# Each time is the median of three prefills into a fresh cache, after one warm-up prefill.

# %%
prompt = torch.randint(config.vocab_size, (1, 200))
with torch.inference_mode():
    reference = model(prompt, cache=DynamicCache(config, 1, 200))
chunk_sizes, seconds = [8, 32, 64, 200], []
for chunk in chunk_sizes:
    logits = impl.chunked_prefill.chunked_prefill(model, prompt, DynamicCache(config, 1, 200), chunk)
    seconds.append(median_seconds(lambda cache: impl.chunked_prefill.chunked_prefill(model, prompt, cache, chunk),
                                  lambda: (DynamicCache(config, 1, 200),), warmup=1, rounds=3))
    print(f"chunk {chunk:4d}: {seconds[-1] * 1e3:7.1f} ms, max |logit diff| vs one shot "
          f"{(logits - reference).abs().max().item():.2e}")
plt.figure(figsize=(4.5, 3))
plt.bar([str(c) for c in chunk_sizes], [s * 1e3 for s in seconds])
plt.xlabel("chunk size (tokens)"); plt.ylabel("prefill of 200 tokens, ms"); plt.title("chunked prefill cost")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. The phases on an H200's roofline
# Llama-3-8B in bf16: prefill far right of the ridge (compute-bound), decode far left (memory-bound);
# batching decodes walks them right, long contexts walk them back.

# %%
h200 = Peaks("H200", copy_bytes_per_s=4.297e12, matmul_flops_per_s=673e12, matmul_dtype="bf16")
c8 = SHAPES["llama-3-8b"]
points = {"prefill 2048": impl.roofline.phase_estimate(c8, 2048, h200),
          "decode b1 @2k": impl.roofline.phase_estimate(c8, 1, h200, past_len=2047),
          "decode b64 @2k": impl.roofline.phase_estimate(c8, 1, h200, past_len=2047, batch=64),
          "decode b256 @128": impl.roofline.phase_estimate(c8, 1, h200, past_len=127, batch=256),
          "decode b256 @8k": impl.roofline.phase_estimate(c8, 1, h200, past_len=8191, batch=256)}
ai = np.logspace(-1, 4, 200)
plt.figure(figsize=(6, 4))
plt.loglog(ai, np.minimum(h200.matmul_flops_per_s, h200.copy_bytes_per_s * ai) / 1e12, color="gray")
for name, est in points.items():
    attainable = min(h200.matmul_flops_per_s, h200.copy_bytes_per_s * est.intensity) / 1e12
    plt.scatter([est.intensity], [attainable])
    plt.annotate(f"{name} ({est.bound}, {est.predicted_s * 1e3:.1f} ms)", (est.intensity, attainable), fontsize=7)
plt.axvline(h200.ridge_intensity, linestyle=":", color="gray")
plt.xlabel("arithmetic intensity (FLOP/byte)"); plt.ylabel("attainable TFLOP/s")
plt.title("Llama-3-8B phases on an H200 roofline"); plt.tight_layout(); plt.show()
