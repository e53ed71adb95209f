# %% [markdown]
# # inf23 · Long context — your RoPE scaling and your ring-buffer cache
#
# This notebook runs **your** code from `exercises/inf23/`.
# It plots the wavelength of every RoPE pair under each scaling, the
# memory of your ring cache against a full cache as the sequence grows, and what a sliding window costs
# the real model in perplexity, position by position. On a CPU it runs in about a minute.

# %%
import math
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from lab.config import SHAPES
from lab.impl import Topic, impl_root

torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))
impl = Topic("inf23")
print("implementation:", impl_root())

# %% [markdown]
# ## 1. Wavelengths per pair under each scaling
# Pair `i` of a head turns once every `2π / inv_freq[i]` tokens. The lab model (SmolLM2-135M) was
# trained on 8,192 tokens: pairs above the dashed line never completed a turn in training. Each scaling
# by 4 is drawn from your functions; plain RoPE is the baseline. Linear stretches every pair; YaRN and
# Llama 3 stretch only the slow pairs; dynamic NTK (here at 4 × 8,192 tokens) bends the curve.

# %%
cfg = SHAPES["smollm2-135m"]
d, theta, L, s = cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings, 4.0
rs = impl.rope_scaling
schemes = {
    "plain": rs.default_inv_freq(d, theta),
    f"linear x{s:g}": rs.linear_inv_freq(d, theta, s),
    f"dynamic NTK x{s:g} at {int(s) * L}": rs.dynamic_ntk_inv_freq(d, theta, s, L, int(s) * L),
    f"YaRN x{s:g}": rs.yarn_inv_freq(d, theta, s, L),
    f"Llama 3 x{s:g}": rs.llama3_inv_freq(d, theta, s, 1.0, 4.0, L),
}
plt.figure(figsize=(7, 4))
for name, inv_freq in schemes.items():
    plt.plot(2 * math.pi / inv_freq, marker=".", label=name, lw=2.5 if name == "plain" else 1.2)
plt.axhline(L, color="grey", ls="--", label=f"trained context {L}")
plt.yscale("log"); plt.xlabel("pair index i"); plt.ylabel("wavelength (tokens)")
plt.title(f"RoPE wavelengths, SmolLM2-135M (head_dim {d}, theta {theta:g})"); plt.legend(fontsize=8)
plt.tight_layout(); plt.show()
print(f"YaRN x{s:g}: attention factor {rs.yarn_attention_factor(s):.4f}, logits x {rs.yarn_attention_factor(s) ** 2:.4f}")

# %% [markdown]
# ## 2. Memory of the ring cache against a full cache
# The real model's shape, fp32, batch 1, window 256: K/V of random values are fed one token at a time,
# and the bytes of every tensor your cache object holds are counted. A full cache (inf10's) needs 45 KiB
# per token for this model, whatever it has preallocated; your ring must stay at `window` slots.

# %%
def held_bytes(cache):
    """Bytes of the distinct tensor storages the cache holds in its attributes (lists included)."""
    storages = {}
    for value in vars(cache).values():
        for t in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(t, torch.Tensor):
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


window, steps = 256, 1024
per_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 4            # bytes, fp32
ring = impl.sliding_window.RingKVCache(cfg, 1, window)
shape = (1, cfg.num_kv_heads, 1, cfg.head_dim)
seen, ring_mb = [], []
for t in range(steps):
    k, v = torch.randn(shape), torch.randn(shape)
    for layer in range(cfg.num_layers):
        ring.update(layer, k, v)
    if (t + 1) % 32 == 0:
        seen.append(t + 1)
        ring_mb.append(held_bytes(ring) / 2**20)
plt.figure(figsize=(6, 3.5))
plt.plot(seen, [n * per_token / 2**20 for n in seen], label="full cache (every token)")
plt.plot(seen, ring_mb, label=f"your RingKVCache, window {window}")
plt.xlabel("tokens seen"); plt.ylabel("MiB"); plt.title("KV cache memory, SmolLM2-135M, fp32")
plt.legend(); plt.tight_layout(); plt.show()
print(f"after {steps} tokens: a full cache {steps * per_token / 2**20:.1f} MiB, your ring {ring_mb[-1]:.1f} MiB "
      f"(formula for {window} slots: {window * per_token / 2**20:.1f} MiB)")

# %% [markdown]
# ## 3. What a window costs the real model, position by position
# 1,024 tokens of the lab's evaluation text through the real model, once with full causal attention and
# once with your sliding-window attention (window 128), no cache: the loss of each token, averaged over
# bands of 128 positions. Inside the first window both are the same model; after it, the windowed model
# has lost the far context (Xiao et al. show that losing the very first tokens, the "attention sinks",
# costs most of it).

# %%
from functools import partial

from lab.data import eval_token_ids
from lab.weights import load_real_model

model = load_real_model().eval()
ids = torch.tensor([eval_token_ids(max_tokens=1024)])
band, win = 128, 128


@torch.inference_mode()
def token_nll(model):
    logits = model(ids)[0, :-1].float()
    return -F.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]


full_nll = token_nll(model)
saved = model.attention
model.attention = partial(impl.sliding_window.sliding_window_attention, window=win)
window_nll = token_nll(model)
model.attention = saved
x = [(i + 0.5) * band for i in range(full_nll.numel() // band)]


def per_band(nll):
    return [math.exp(nll[i * band:(i + 1) * band].mean().item()) for i in range(len(x))]


plt.figure(figsize=(6, 3.5))
plt.plot(x, per_band(full_nll), marker="o", label="full attention")
plt.plot(x, per_band(window_nll), marker="o", label=f"your sliding window, {win} tokens")
plt.xlabel("position"); plt.ylabel(f"perplexity per {band} tokens"); plt.legend()
plt.title("SmolLM2-135M on the lab's eval text"); plt.tight_layout(); plt.show()
print(f"perplexity over positions 1-{full_nll.numel()}: full {full_nll.mean().exp():.2f}, "
      f"window {win}: {window_nll.mean().exp():.2f}")

# %% [markdown]
# ## 4. Past the trained context
# The lesson's table scores 12,288 tokens (1.5 × the trained 8,192) with each RoPE scaling; it takes
# 11-35 minutes per setting on the lab's CPU, seconds on a GPU. Run it on your own code with:
#
#     python -m lab.long_context_ppl --impl exercises --tokens 12288 --factor 2 --out ppl.png
