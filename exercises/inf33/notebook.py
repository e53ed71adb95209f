# %% [markdown]
# # inf33 · Prefix caching — chained keys, shared blocks, a shorter time to first token
#
# This notebook runs **your** code from `exercises/inf33/`.
# It shows the chain keys of two prompts with a common system prompt,
# serves chat requests through your cache, and measures time to first token against a cold prefill as
# the shared part of the prompt grows.

# %%
import time

import matplotlib.pyplot as plt
import torch

from lab.block_kv import BlockKV
from lab.impl import Topic, impl_root
from lab.readout import speedup_text
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(1)          # steadier timings on a shared machine
impl = Topic("inf33")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)

# %% [markdown]
# ## 1. Chain keys
# Two chat prompts with the same system prompt, in blocks of 16 tokens: the keys agree while the prefixes
# agree, and differ from the first block that differs on, even where later blocks hold equal tokens.

# %%
system = ("You are a careful assistant for a lab that teaches how inference engines work: KV caches, batching, "
          "paged memory and prefix caching. Answer in one short sentence, plainly, without lists or code, and "
          "say so when you do not know.")
def chat(question):
    return tok.encode(tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": question}]))
a, b = chat("What is the capital of France?"), chat("Name a prime number.")
for i, (ka, kb) in enumerate(zip(impl.block_hash.block_hashes(a, 16), impl.block_hash.block_hashes(b, 16))):
    print(f"block {i}: {ka:016x} {kb:016x} {'shared' if ka == kb else 'differs'}")

# %% [markdown]
# ## 2. Chat requests through the cache
# Six questions with the same system prompt, one after another, through one `PrefixCache` of 64 blocks:
# how many prompt tokens each took from the cache, and its time to first token.

# %%
cache, kv = impl.prefix_cache.PrefixCache(64, 16), BlockKV(model.config, 64, 16)
questions = ["What is the capital of France?", "Name a prime number.", "What colour is the sky?",
             "Who wrote Hamlet?", "What is 12 plus 30?", "Name a planet."]
impl.cached_generate.generate_with_prefix_cache(model, impl.prefix_cache.PrefixCache(64, 16),
                                                BlockKV(model.config, 64, 16), chat("Hello!"), 1)   # warm-up, own pool
ttfts, cached = [], []
for q in questions:
    prompt = chat(q)
    start = time.perf_counter()
    out = impl.cached_generate.generate_with_prefix_cache(model, cache, kv, prompt, 1)
    ttfts.append(time.perf_counter() - start)
    cached.append(out.num_cached_tokens)
    print(f"{len(prompt)} tokens, {out.num_cached_tokens} from the cache, TTFT {1000 * ttfts[-1]:.0f} ms | {q}")
print(f"hit rate {cache.hit_rate:.1%}, blocks available {cache.num_available} of {cache.num_blocks}")

# %% [markdown]
# ## 3. TTFT against the shared share of the prompt
# A 320-token prompt whose first 0%, 50%, 75% or 90% was seen before, against the same prompt cold. A
# cache hit happens once per prompt, so each figure is the median of three fresh setups (a new cache that
# has seen the shared part, then the prompt), timed after the section above warmed the model up.

# %%
def ttft_ms(make_state, prompt, repeats=3):
    """Median milliseconds of the first token of `prompt`, each time with a fresh (cache, kv) pair."""
    times = []
    for _ in range(repeats):
        cache, kv = make_state()
        start = time.perf_counter()
        impl.cached_generate.generate_with_prefix_cache(model, cache, kv, prompt, 1)
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def empty_state():
    return impl.prefix_cache.PrefixCache(64, 16), BlockKV(model.config, 64, 16)


def seen_state(shared_ids):
    cache, kv = empty_state()
    impl.cached_generate.generate_with_prefix_cache(model, cache, kv, shared_ids + [1], 1)      # seen before
    return cache, kv


fractions, cold_ms, warm_ms = [0.0, 0.5, 0.75, 0.9], [], []
base = torch.randint(tok.vocab_size, (320,)).tolist()
for f in fractions:
    shared = int(320 * f)
    prompt = base[:shared] + torch.randint(tok.vocab_size, (320 - shared,)).tolist()
    cold_ms.append(ttft_ms(empty_state, prompt))
    warm_ms.append(ttft_ms(lambda: seen_state(base[:shared]), prompt))
    print(f"{f:.0%} shared: cold {cold_ms[-1]:.0f} ms, with your cache {warm_ms[-1]:.0f} ms "
          f"(yours is {speedup_text(cold_ms[-1] / warm_ms[-1])})")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([100 * f for f in fractions], cold_ms, "o-", label="cold prefill (no cache)")
ax.plot([100 * f for f in fractions], warm_ms, "o-", label="your prefix cache")
ax.set_xlabel("% of the prompt cached"); ax.set_ylabel("TTFT (ms)"); ax.set_title("SmolLM2-135M fp32, 320 tokens, CPU")
ax.legend(); plt.show()

# %% [markdown]
# TTFT falls with the uncached share: at 90% the prefill computes 32 tokens instead of 320. Things to try:
# a pool of 8 blocks (watch the LRU evict and the hit rate drop), block size 4 vs 64 (finer sharing, more
# keys), and a hash hook `hash_fn=lambda parent, block: 0` (every key collides: the answers must not change).
