# %% [markdown]
# # inf01 · Profiling inference — where the time goes, and how far from the ceiling
#
# This notebook runs **your** code from `exercises/inf01/`.
# It profiles a prefill and a decode step of the real model, measures the
# copy bandwidth beside the lab's own measurement, and turns measured times into MFU and MBU.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.flop_counter import FlopCounterMode

from lab.cache import DynamicCache
from lab.hardware import measure_copy_bandwidth, peaks
from lab.impl import Topic, impl_root
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
# One thread keeps timings steady on a shared or busy machine (two threads that must meet at every
# parallel region stall whenever one is descheduled); on a quiet machine of your own, try os.cpu_count().
torch.set_num_threads(1)
impl = Topic("inf01")
model = load_real_model().eval()
tok = load_tokenizer()
device = next(model.parameters()).device
print("implementation:", impl_root(), "| model:", model.config.name, f"{model.weight_bytes() / 1e6:.0f} MB fp32")

# %% [markdown]
# ## 1. Profile a prefill and a decode step
# Your `profile_prefill_decode` labels the two phases and returns the operators by self time. Open the
# trace it writes in https://ui.perfetto.dev to see them on a timeline.

# %%
prompt = tok.encode("Explain in two sentences why the sky is blue. " * 6)
trace = Path(tempfile.mkdtemp()) / "inf01_trace.json"
result = impl.profiling.profile_prefill_decode(model, prompt, top_k=8, trace_path=trace)
print(f"{len(prompt)} prompt tokens; phases:", {k: f"{v * 1e3:.1f} ms" for k, v in result.phase_s.items()})
print(f"{'operator':28s} {'calls':>6s} {'self ms':>9s} {'GFLOP':>8s}")
for op in result.ops:
    print(f"{op.name:28s} {op.calls:6d} {op.time_s * 1e3:9.2f} {op.flops / 1e9:8.2f}")
print("trace written to", result.trace_path)

# %%
plt.figure(figsize=(6, 3))
plt.barh([op.name for op in result.ops][::-1], [op.time_s * 1e3 for op in result.ops][::-1])
plt.xlabel(f"self time ({result.device_type}), ms"); plt.title("top operators: prefill + one decode step")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Copy bandwidth: yours beside the lab's
# Small buffers fit in the caches and report cache bandwidth; the figure that bounds a decode step is the
# plateau of large ones. Your measurement should sit on the lab's curve.

# %%
sizes = [1 << 20, 1 << 22, 1 << 24, 1 << 26]
yours = [impl.bandwidth.copy_bandwidth(n, device, repeats=5) / 1e9 for n in sizes]
lab = [measure_copy_bandwidth(device, n, repeats=5) / 1e9 for n in sizes]
for n, y, b in zip(sizes, yours, lab):
    print(f"{n >> 20:4d} MiB: yours {y:6.1f} GB/s, lab {b:6.1f} GB/s")
plt.figure(figsize=(5, 3))
plt.semilogx([n >> 20 for n in sizes], yours, marker="o", label="your copy_bandwidth")
plt.semilogx([n >> 20 for n in sizes], lab, marker="x", linestyle="--", label="lab.hardware")
plt.xlabel("buffer (MiB)"); plt.ylabel("GB/s (read + write)"); plt.legend(); plt.title("copy bandwidth")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. MFU and MBU of prefill and decode
# FLOPs from torch's counter, bytes from the model's weights and its KV cache, time from your
# `measure_seconds`, peaks measured on this machine.

# %%
here = peaks()
prompt_ids = torch.tensor([prompt])
kv_bytes_per_token = 2 * model.config.num_layers * model.config.kv_size * 4


def prefill():
    model(prompt_ids, cache=DynamicCache(model.config, 1, len(prompt) + 1), last_only=True)


decode_cache = DynamicCache(model.config, 1, len(prompt) + 64)
with torch.inference_mode():
    model(prompt_ids, cache=decode_cache)


def decode():
    model(prompt_ids[:, :1], cache_position=torch.tensor([len(prompt)]), cache=decode_cache, last_only=True)


rows = []
with torch.inference_mode():
    for name, fn, num_bytes in [("prefill", prefill, model.weight_bytes() + len(prompt) * kv_bytes_per_token),
                                ("decode", decode, model.weight_bytes() + (len(prompt) + 1) * kv_bytes_per_token)]:
        with FlopCounterMode(display=False) as counter:
            fn()
        seconds = impl.utilization.measure_seconds(fn, warmup=1, repeats=5)
        u = impl.utilization.utilization(counter.get_total_flops(), num_bytes, seconds, here)
        rows.append((name, u))
        print(f"{name:8s} {seconds * 1e3:8.1f} ms  MFU {u.mfu:6.1%}  MBU {u.mbu:6.1%}  ({u.bound}-bound)")
print(f"peaks here: {here.copy_bytes_per_s / 1e9:.1f} GB/s copy, {here.matmul_flops_per_s / 1e9:.0f} GFLOP/s {here.matmul_dtype}")

# %%
plt.figure(figsize=(4.5, 3))
x = range(len(rows))
plt.bar([i - 0.2 for i in x], [u.mfu * 100 for _, u in rows], width=0.4, label="MFU")
plt.bar([i + 0.2 for i in x], [u.mbu * 100 for _, u in rows], width=0.4, label="MBU")
plt.xticks(list(x), [n for n, _ in rows]); plt.ylabel("% of measured peak"); plt.legend()
plt.title("prefill uses the ALUs, decode the memory"); plt.tight_layout(); plt.show()
