# %% [markdown]
# # inf10 · KV cache — your cache against recomputing everything
#
# This notebook runs **your** code from `exercises/inf10/`.
# It generates with your cache and with the no-cache loop, times each
# decode step of both as the context grows, and checks your cache's memory against the formula.

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
impl = Topic("inf10")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)


no_cache_greedy = Topic("inf00").generate.greedy_generate      # your inf00 loop: the whole sequence every step


# %% [markdown]
# ## 1. Same tokens, less work
# Your `kv_cache_decode` must return exactly the no-cache loop's tokens (your inf00 `greedy_generate`: this
# cell needs inf00 done).

# %%
prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Why is the sky blue?"}]))
t0 = time.perf_counter()
cached = impl.decode.kv_cache_decode(model, prompt, max_new_tokens=24)
t_cached = time.perf_counter() - t0
t0 = time.perf_counter()
plain = no_cache_greedy(model, prompt, 24)
t_plain = time.perf_counter() - t0
print(repr(tok.decode(cached)))
print(f"same tokens: {cached == plain} | with your cache {t_cached:.2f} s, without {t_plain:.2f} s "
      f"({t_plain / t_cached:.1f}x) for a {len(prompt)}-token prompt and 24 new tokens")

# %% [markdown]
# ## 2. Step time as the context grows
# One decode step with your cache, and one recompute step, at growing contexts. With the cache a step
# costs about the same at any context (it reads the weights once, plus a little more cache each step);
# without it, a step is a prefill of the whole sequence.

# %%
contexts = [32, 96, 160, 224, 288]
step_cached, step_recompute = [], []
with torch.inference_mode():
    for context in contexts:
        ids = torch.randint(model.config.vocab_size, (1, context))
        cache = impl.kv_cache.KVCache(model.config, 1, context + 4)
        logits = impl.decode.prefill(model, ids, cache)
        next_id = logits.argmax(-1)
        impl.decode.decode_step(model, next_id, cache)                  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            impl.decode.decode_step(model, next_id, cache)
        step_cached.append((time.perf_counter() - t0) / 3)
        t0 = time.perf_counter()
        model(ids, last_only=True)
        step_recompute.append(time.perf_counter() - t0)
        print(f"context {context:4d}: cached step {step_cached[-1] * 1e3:6.1f} ms, "
              f"recompute {step_recompute[-1] * 1e3:7.1f} ms ({step_recompute[-1] / step_cached[-1]:.1f}x)")
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
    print(f"{name:14s} {str(dtype):15s} max_len 8192: nbytes {cache.nbytes / 1e9:6.3f} GB, "
          f"formula {formula(cfg, 8192, 1, size) / 1e9:6.3f} GB")

cfg = SHAPES["llama-3-8b"]
lengths = [1024, 2048, 4096, 8192, 16384, 32768]
gqa = [impl.kv_cache.KVCache(cfg, 8, n, torch.bfloat16, "meta").nbytes / 1e9 for n in lengths]
mha = [impl.kv_cache.KVCache(cfg.with_(num_kv_heads=32), 8, n, torch.bfloat16, "meta").nbytes / 1e9 for n in lengths]
plt.figure(figsize=(6, 3.5))
plt.plot(lengths, mha, marker="o", label="as MHA (32 KV heads)")
plt.plot(lengths, gqa, marker="o", label="GQA (8 KV heads), your KVCache")
plt.axhline(16.06, color="gray", linestyle="--", label="the weights (bf16)")
plt.axhline(141, color="black", linestyle=":", label="H200 memory")
plt.xscale("log", base=2); plt.xlabel("max_len (tokens)"); plt.ylabel("GB")
plt.title("Llama-3-8B KV cache, batch 8, bf16"); plt.legend(fontsize=8); plt.tight_layout(); plt.show()
