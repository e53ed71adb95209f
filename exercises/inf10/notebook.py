# %% [markdown]
# # inf10 · KV cache — your cache against recomputing everything
#
# This notebook runs **your** code from `exercises/inf10/`.
# It generates with your cache and with the no-cache loop, times each
# decode step of both as the context grows, and checks your cache's memory against the formula.

# %%
import matplotlib.pyplot as plt
import torch

from lab.config import SHAPES
from lab.readout import speedup_text
from lab.impl import Topic, impl_root
from lab.timing import median_seconds
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(1)          # steadier timings on a shared machine; the cache's gain shows on one core too
impl = Topic("inf10")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)


no_cache_greedy = Topic("inf00").generate.greedy_generate      # your inf00 loop: the whole sequence every step


# %% [markdown]
# ## 1. Same tokens, less work
# Your `kv_cache_decode` must return exactly the no-cache loop's tokens (your inf00 `greedy_generate`: this
# cell needs inf00 done). Each is timed as the median of three runs after one warm-up run (the first run of
# anything pays for allocations and caches, and one run on a shared machine can be hit by a neighbour).

# %%
prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Why is the sky blue?"}]))
cached = impl.decode.kv_cache_decode(model, prompt, max_new_tokens=24)
plain = no_cache_greedy(model, prompt, 24)
t_cached = median_seconds(lambda: impl.decode.kv_cache_decode(model, prompt, max_new_tokens=24), warmup=1, rounds=3)
t_plain = median_seconds(lambda: no_cache_greedy(model, prompt, 24), warmup=1, rounds=3)
print(repr(tok.decode(cached)))
print(f"same tokens: {cached == plain} | with your cache {t_cached:.2f} s, without {t_plain:.2f} s "
      f"(medians of 3): the cache is {speedup_text(t_plain / t_cached)} for a {len(prompt)}-token prompt "
      "and 24 new tokens")

# %% [markdown]
# ## 2. Step time as the context grows
# One decode step with your cache, and one recompute step, at growing contexts. With the cache a step
# costs about the same at any context (it reads the weights once, plus a little more cache each step);
# without it, a step is a prefill of the whole sequence. Each figure is the median of five steps after a
# warm-up step (the cache grows by one token per step, 0.3% of the shortest context).

# %%
contexts = [32, 96, 160, 224, 288]
step_cached, step_recompute = [], []
with torch.inference_mode():
    for context in contexts:
        ids = torch.randint(model.config.vocab_size, (1, context))
        cache = impl.kv_cache.KVCache(model.config, 1, context + 8)
        next_id = impl.decode.prefill(model, ids, cache).argmax(-1)
        step_cached.append(median_seconds(lambda: impl.decode.decode_step(model, next_id, cache), warmup=1, rounds=5))
        step_recompute.append(median_seconds(lambda: model(ids, last_only=True), warmup=1, rounds=5))
        print(f"context {context:4d}: cached step {step_cached[-1] * 1e3:6.1f} ms, "
              f"recompute {step_recompute[-1] * 1e3:7.1f} ms (the cache is "
              f"{speedup_text(step_recompute[-1] / step_cached[-1])})")
plt.figure(figsize=(6, 3.5))
plt.plot(contexts, [s * 1e3 for s in step_recompute], marker="o", label="recompute (no cache)")
plt.plot(contexts, [s * 1e3 for s in step_cached], marker="o", label="your KVCache")
plt.xlabel("context (tokens)"); plt.ylabel("ms per decode step"); plt.legend()
plt.title("decode step time vs context (CPU, real model)"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. What the cache costs in memory
# Your cache's `nbytes` against the lesson's formula, and the memory of a Llama-3-8B-shaped cache as
# the context grows: with GQA (8 KV heads, what Llama-3 does) and as if it were multi-head attention
# (32 KV heads). The buffers are made on the `meta` device: shapes and bytes, no memory.

# %%
def formula(config, seq_len, batch, dtype_bytes):      # the lesson's formula: K and V, per layer, per KV head
    per_token = 2 * config.num_layers * config.kv_size                  # kv_size = num_kv_heads * head_dim
    return per_token * seq_len * batch * dtype_bytes


for name, dtype in (("smollm2-135m", torch.float32), ("llama-3-8b", torch.bfloat16)):
    cfg = SHAPES[name]
    cache = impl.kv_cache.KVCache(cfg, 1, 8192, dtype=dtype, device="meta")
    size = torch.empty(0, dtype=dtype).element_size()
    print(f"{name:14s} {str(dtype):15s} max_len 8192: nbytes {cache.nbytes / 2**20:8.1f} MiB, "
          f"formula {formula(cfg, 8192, 1, size) / 2**20:8.1f} MiB")

# Units: a cache of power-of-two shapes fills whole GiB (2^30 bytes); weights and HBM are sold in GB (10^9).
cfg = SHAPES["llama-3-8b"]
lengths = [1024, 2048, 4096, 8192, 16384, 32768]
gqa = [impl.kv_cache.KVCache(cfg, 8, n, torch.bfloat16, "meta").nbytes / 2**30 for n in lengths]
mha = [impl.kv_cache.KVCache(cfg.with_(num_kv_heads=32), 8, n, torch.bfloat16, "meta").nbytes / 2**30 for n in lengths]
plt.figure(figsize=(6, 3.5))
plt.plot(lengths, mha, marker="o", label="as MHA (32 KV heads)")
plt.plot(lengths, gqa, marker="o", label="GQA (8 KV heads), your KVCache")
plt.axhline(16.06e9 / 2**30, color="gray", linestyle="--", label="the weights (bf16, 16.06 GB)")
plt.axhline(141e9 / 2**30, color="black", linestyle=":", label="H200 memory (141 GB)")
plt.xscale("log", base=2); plt.yscale("log", base=2); plt.xlabel("max_len (tokens)"); plt.ylabel("GiB")
plt.title("Llama-3-8B KV cache, batch 8, bf16"); plt.legend(fontsize=8); plt.tight_layout(); plt.show()
