# %% [markdown]
# # inf03 · Baseline benchmarking — a reproducible report of the real model
#
# This notebook runs **your** harness from `exercises/inf03/`.
# It draws a seeded workload, benchmarks two engines on the real model (greedy decoding with a KV cache,
# and your inf00 loop without one, the baseline: it needs inf00 done), and writes the JSON report that
# later topics will compare against.

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from lab.impl import Topic, impl_root
from lab.streaming import greedy_stream, no_cache_stream
from lab.weights import load_real_model

# One thread keeps timings steady on a shared or busy machine (two threads that must meet at every
# parallel region stall whenever one is descheduled); on a quiet machine of your own, try os.cpu_count().
torch.set_num_threads(1)
impl = Topic("inf03")
model = load_real_model().eval()
print("implementation:", impl_root())

# %% [markdown]
# ## 1. A seeded workload
# Prompt lengths uniform, output lengths log-normal (most short, a few long), all from one seed.

# %%
D = impl.workload.LengthDistribution
workload = impl.workload.make_workload(6, D.uniform(16, 48), D.lognormal(median=6, sigma=0.5, low=2, high=12),
                                       model.config.vocab_size, seed=2026)
print(json.dumps(workload.spec(), indent=1))
big = impl.workload.make_workload(2000, D.uniform(16, 48), D.lognormal(6, 0.5, 2, 12), 100, seed=1)
fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
axes[0].hist([len(r.prompt_ids) for r in big.requests], bins=25); axes[0].set_title("prompt lengths (2,000 draws)")
axes[1].hist([r.max_new_tokens for r in big.requests], bins=15); axes[1].set_title("output lengths")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Benchmark two engines on the same workload
# Both are token streams (`lab.streaming`). Your `run_benchmark` warms each up, then times every request.

# %%
reports = {}
for name, stream in [("greedy + KV cache", greedy_stream(model, max_len=64)),
                     ("no cache (baseline)", no_cache_stream(model))]:
    reports[name] = impl.harness.run_benchmark(stream, workload, num_warmup=1, name=name)
    r = reports[name].results
    print(f"{name:22s} {r['output_tokens_per_s']:6.1f} tok/s | TTFT P50 {r['ttft_s']['p50'] * 1e3:6.1f} ms "
          f"P95 {r['ttft_s']['p95'] * 1e3:6.1f} | TBT P50 {r['tbt_s']['p50'] * 1e3:6.1f} ms "
          f"P99 {r['tbt_s']['p99'] * 1e3:6.1f} | E2E P50 {r['e2e_s']['p50'] * 1e3:7.1f} ms")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, metric in zip(axes, ["ttft_s", "tbt_s", "e2e_s"]):
    x = np.arange(3)
    for i, (name, report) in enumerate(reports.items()):
        stats = report.results[metric]
        ax.bar(x + 0.4 * i - 0.2, [stats[k] * 1e3 for k in ("p50", "p95", "p99")], width=0.4, label=name)
    ax.set_xticks(x, ["P50", "P95", "P99"]); ax.set_title(metric.replace("_s", " (ms)"))
axes[0].legend(fontsize=7)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. The report
# The JSON a later topic compares against: how the workload was drawn, the settings, the figures, the
# machine and the library versions. Run the cell twice: the keys and the workload stay the same.

# %%
path = reports["greedy + KV cache"].write_json(Path(tempfile.mkdtemp()) / "inf03_baseline.json")
document = json.loads(path.read_text())
print(path)
print(json.dumps({k: document[k] for k in ("workload", "settings", "machine", "versions")}, indent=1))
print(json.dumps(document["results"], indent=1)[:800])
