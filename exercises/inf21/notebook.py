# %% [markdown]
# # inf21 · MQA & GQA — the cache it saves, the copies it must avoid, the price of converting
#
# This notebook runs **your** code from `exercises/inf21/`.
# It computes the KV-cache bytes of MHA, GQA and MQA for the real
# configs, times your `gqa_attention` against the textbook repeat-K/V attention as the context grows
# (and the memory each allocates), and converts the real model to MQA to see what that costs.

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lab.config import SHAPES
from lab.data import eval_token_ids
from lab.impl import Topic, impl_root
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))
impl = Topic("inf21")
print("implementation:", impl_root())

# %% [markdown]
# ## 1. KV-cache bytes per token
# Your `kv_bytes_per_token` for each real config as MHA (a KV head per query head), as shipped (GQA)
# and as MQA (one KV head), in bf16; then the cache of one Llama-3-8B sequence as the context grows,
# beside what an H100 and an H200 have left after the 16 GB of weights.

# %%
kinds = {"MHA": lambda c: c.with_(num_kv_heads=c.num_heads), "GQA": lambda c: c, "MQA": lambda c: c.with_(num_kv_heads=1)}
table = {name: {kind: impl.kv_bytes.kv_bytes_per_token(make(c)) for kind, make in kinds.items()}
         for name, c in SHAPES.items()}
for name, row in table.items():
    print(f"{name:14s}" + "".join(f"  {kind} {b / 1024:7.1f} KiB" for kind, b in row.items()))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
width = 0.25
for i, kind in enumerate(kinds):
    ax1.bar([j + i * width for j in range(len(table))], [row[kind] / 1024 for row in table.values()], width, label=kind)
ax1.set_xticks([j + width for j in range(len(table))], list(table))
ax1.set_ylabel("KiB per token (bf16)"); ax1.set_yscale("log"); ax1.legend(); ax1.set_title("KV bytes per token")
contexts = [2**i for i in range(10, 18)]
llama = SHAPES["llama-3-8b"]
for kind, make in kinds.items():
    ax2.plot(contexts, [impl.kv_bytes.kv_cache_bytes(make(llama), 1, n) / 1e9 for n in contexts], marker="o", label=kind)
for label, free in (("H100 − weights", 80 - 16.06), ("H200 − weights", 141 - 16.06)):
    ax2.axhline(free, linestyle="--", color="gray"); ax2.text(contexts[0], free * 1.1, label, fontsize=8)
ax2.set_xscale("log", base=2); ax2.set_yscale("log"); ax2.set_xlabel("context (tokens)"); ax2.set_ylabel("GB")
ax2.set_title("Llama-3-8B: cache of one sequence"); ax2.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Sharing the KV heads vs repeating them
# One decode step (32 query heads of 128, 8 KV heads, float32) at growing context: your `gqa_attention`
# against the textbook way, which repeats each KV head 4 times and runs multi-head attention. Beside the
# time, the largest tensor each one allocates (every aten op watched, as the tests do).

# %%
def repeated_kv_attention(q, k, v):
    """The baseline: K/V repeated for every query head (4x the cache, written then read), then MHA."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v


class LargestAllocation(TorchDispatchMode):
    """The largest new tensor storage any aten op returns inside the block."""
    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                self.bytes = max(self.bytes, t.untyped_storage().nbytes())
        return out


def best_of(fn, *args, repeats=5):
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(*args); times.append(time.perf_counter() - t0)
    return min(times)


contexts = [512, 1024, 2048, 4096, 8192]
yours_ms, repeat_ms, yours_mb, repeat_mb = [], [], [], []
for n in contexts:
    q = torch.randn(1, 32, 1, 128)
    k, v = torch.randn(1, 8, n, 128), torch.randn(1, 8, n, 128)
    out = impl.gqa.gqa_attention(q, k, v)
    assert (out - repeated_kv_attention(q, k, v)).abs().max() < 1e-4
    yours_ms.append(best_of(impl.gqa.gqa_attention, q, k, v) * 1e3)
    repeat_ms.append(best_of(repeated_kv_attention, q, k, v) * 1e3)
    for fn, sink in ((impl.gqa.gqa_attention, yours_mb), (repeated_kv_attention, repeat_mb)):
        with LargestAllocation() as seen:
            fn(q, k, v)
        sink.append(seen.bytes / 2**20)
    print(f"context {n:5d}: yours {yours_ms[-1]:6.2f} ms (largest tensor {yours_mb[-1]:6.2f} MiB) | "
          f"repeat K/V {repeat_ms[-1]:6.2f} ms ({repeat_mb[-1]:6.2f} MiB) | K alone {k.numel() * 4 / 2**20:.1f} MiB")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.plot(contexts, repeat_ms, marker="o", label="repeat K/V, then MHA"); ax1.plot(contexts, yours_ms, marker="o", label="your gqa_attention")
ax1.set_xlabel("context (tokens)"); ax1.set_ylabel("ms per decode step"); ax1.legend(); ax1.set_title("time (CPU, float32)")
ax2.plot(contexts, repeat_mb, marker="o", label="repeat K/V, then MHA"); ax2.plot(contexts, yours_mb, marker="o", label="your gqa_attention")
ax2.set_xlabel("context (tokens)"); ax2.set_ylabel("MiB"); ax2.legend(); ax2.set_title("largest tensor allocated")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. Converting the real model to MQA
# SmolLM2-135M has 3 KV heads for 9 query heads. Your `convert_to_gqa(model, 1)` mean-pools them into
# one (MQA); the alternative keeps the first head of each group. Perplexity on 512 tokens of the lab's
# evaluation text, and the logits' KL divergence from the original. Ainslie et al. recover the quality
# with 5% more training ("uptraining"); here there is none.

# %%
model, tok = load_real_model(), load_tokenizer()
ids = torch.tensor(eval_token_ids(tok, max_tokens=512))


@torch.no_grad()
def nll_and_logits(m):
    logits = m(ids[None])[0]
    return torch.nn.functional.cross_entropy(logits[:-1].double(), ids[1:]).item(), logits


base_nll, base_logits = nll_and_logits(model)
mqa = impl.convert.convert_to_gqa(model, 1)
mean_nll, mean_logits = nll_and_logits(mqa)
with torch.no_grad():
    for layer, src in zip(mqa.layers, model.layers):
        for proj in ("k_proj", "v_proj"):
            getattr(layer.self_attn, proj).weight.copy_(getattr(src.self_attn, proj).weight[:model.config.head_dim])
first_nll, first_logits = nll_and_logits(mqa)


def kl(ref, other):
    p = torch.log_softmax(ref.double(), -1)
    return (p.exp() * (p - torch.log_softmax(other.double(), -1))).sum(-1).mean().item()


results = {"original (3 KV heads)": (base_nll, 0.0), "MQA, mean-pooled": (mean_nll, kl(base_logits, mean_logits)),
           "MQA, first head": (first_nll, kl(base_logits, first_logits))}
for name, (nll, div) in results.items():
    print(f"{name:22s} perplexity {math.exp(nll):12,.1f}   KL from original {div:6.3f} nats")
plt.figure(figsize=(6, 3.2))
plt.bar(list(results), [math.exp(n) for n, _ in results.values()])
plt.yscale("log"); plt.ylabel("perplexity (512 tokens)"); plt.title("SmolLM2-135M converted to MQA, no uptraining")
plt.tight_layout(); plt.show()
