# %% [markdown]
# # inf11 · Mixed precision — bytes, error and overflow of fp16 and bf16
#
# This notebook runs **your** code from `exercises/inf11/`.
# It casts the real model with your `cast_model`, measures what that
# costs in accuracy against fp32 with your `logit_error`, finds the real model's massive activations
# with your `residual_absmax`, and shows where fp16 overflows.

# %%
import os
import time

import matplotlib.pyplot as plt
import torch

from lab.data import eval_token_ids
from lab.impl import Topic, impl_root
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))
impl = Topic("inf11")
model = load_real_model().eval()
print("implementation:", impl_root(), "| model:", model.config.name)

# %% [markdown]
# ## 1. The formats, from their bits
# Your `float_format` beside `torch.finfo`.

# %%
widths = {torch.float32: (8, 23), torch.bfloat16: (8, 7), torch.float16: (5, 10), torch.float8_e5m2: (5, 2)}
for dtype, (e, m) in widths.items():
    f, ref = impl.formats.float_format(e, m), torch.finfo(dtype)
    print(f"{str(dtype):20s} e={e} m={m:2d}  max {f.max_value:10.4g} (finfo {ref.max:10.4g})  "
          f"min normal {f.min_normal:9.3g}  eps {f.eps:9.3g}")

# %% [markdown]
# ## 2. Half the bytes, and what it costs in accuracy
# Your casts of the real model, their weight bytes, and their logits on 64 tokens of text against fp32.

# %%
ids = torch.tensor([eval_token_ids(max_tokens=64)])
with torch.inference_mode():
    ref = model(ids)[0]
errors = {}
for dtype in (torch.float16, torch.bfloat16):
    half = impl.cast.cast_model(model, dtype)
    with torch.inference_mode():
        errors[dtype] = e = impl.error.logit_error(ref, half(ids)[0])
    print(f"{str(dtype):15s} weights {impl.cast.weight_bytes(half):,} bytes (fp32: {impl.cast.weight_bytes(model):,}) "
          f"| max |dlogit| {e['max_abs']:.3f}, KL {e['kl']:.2e}, top-1 {e['top1']:.1%}")
    del half
plt.figure(figsize=(5, 3))
plt.bar([str(d).replace("torch.", "") for d in errors], [e["kl"] for e in errors.values()])
plt.yscale("log"); plt.ylabel("KL(fp32 || half), nats/token"); plt.title("next-token divergence from fp32")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. Massive activations
# The largest value of the residual stream after each layer (your `residual_absmax`), against fp16's
# largest value and against the largest value whose *square* fp16 can hold (what a naive RMSNorm needs).

# %%
absmax = impl.overflow.residual_absmax(model, ids)
fp16_max = torch.finfo(torch.float16).max
plt.figure(figsize=(6, 3.5))
plt.semilogy(range(len(absmax)), absmax, marker="o", label="max |residual| after the layer")
plt.axhline(fp16_max, color="red", linestyle="--", label="fp16 max (65,504)")
plt.axhline(fp16_max ** 0.5, color="orange", linestyle=":", label="sqrt(fp16 max): x^2 overflows above")
plt.xlabel("layer"); plt.ylabel("|x|"); plt.legend(fontsize=8); plt.title("the real model's residual stream")
plt.tight_layout(); plt.show()
peak_layer = max(range(len(absmax) - 1), key=absmax.__getitem__)      # a layer that has a next one
print(f"peak {absmax[peak_layer]:,.0f} after layer {peak_layer}: {absmax[peak_layer] / fp16_max:.0%} of fp16's max")

# %% [markdown]
# ## 4. The case where fp16 overflows and bf16 does not
# The residual stream after the peak layer, normalized by the next layer's RMSNorm: naively in the
# input dtype, and with your `rms_norm` (statistics in fp32). Error against float64.

# %%
captured = {}
handle = model.layers[peak_layer].register_forward_hook(lambda m, i, out: captured.setdefault("x", out))
with torch.inference_mode():
    model(ids)
handle.remove()
x = captured["x"]
norm = model.layers[peak_layer + 1].input_layernorm
x64 = x.double()
want = norm.weight.double() * x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + norm.eps)
for dtype in (torch.float16, torch.bfloat16):
    xd, w = x.to(dtype), norm.weight.to(dtype)
    naive = w * (xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + norm.eps))
    yours = impl.overflow.rms_norm(xd, w, norm.eps)
    naive_err, your_err = ((y.double() - want).abs().max().item() for y in (naive, yours))
    print(f"{str(dtype):15s} x^2 has inf: {bool(torch.isinf(xd.pow(2)).any())!s:5s} | "
          f"naive norm error {naive_err:9.3g} | your rms_norm error {your_err:.3g}")

# %% [markdown]
# ## 5. Speed on this CPU
# One decode step (64 tokens of context) in fp32 and in your bf16 copy. A CPU without bf16 matrix
# units converts bf16 to fp32 inside its kernels, so the halved bytes rarely show here; on a GPU they do
# (the topic's speed test).

# %%
from lab.cache import DynamicCache

half = impl.cast.cast_model(model, torch.bfloat16)
times = {}
with torch.inference_mode():
    for name, m in (("fp32", model), ("bf16 (yours)", half)):
        dtype = next(m.parameters()).dtype
        cache = DynamicCache(m.config, 1, 80, dtype=dtype)
        m(ids, cache=cache)
        token = ids[:, -1:]
        m(token, cache=cache)
        t0 = time.perf_counter()
        for _ in range(5):
            m(token, cache=cache)
        times[name] = (time.perf_counter() - t0) / 5
        print(f"{name:13s} {times[name] * 1e3:6.1f} ms per decode step")
plt.figure(figsize=(4, 3))
plt.bar(list(times), [t * 1e3 for t in times.values()])
plt.ylabel("ms per step"); plt.title("decode step on this CPU"); plt.tight_layout(); plt.show()
