# %% [markdown]
# # inf14 · INT8 quantization — scales, exact sums, outliers, and what they cost the real model
#
# This notebook runs **your** code from `exercises/inf14/`.
# It quantizes a real weight per channel and per tensor, shows why the
# accumulator must be int32, finds the activation outliers of SmolLM2-135M, and measures the perplexity
# of the model with int8 weights, W8A8 and LLM.int8(). On a GPU it also times your Triton kernels.

# %%
import copy
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from lab.data import eval_token_ids
from lab.eval import perplexity
from lab.impl import Topic, impl_root
from lab.readout import speedup_text
from lab.timing import median_seconds
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() or 1))
impl = Topic("inf14")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)

# %% [markdown]
# ## 1. Per channel vs per tensor
# One scale per output row (`quantize_per_channel`) against one scale for the whole weight. The row
# sizes of a real weight vary, and a per-tensor scale rounds the small rows on the grid of the largest.

# %%
w = model.layers[0].mlp.down_proj.weight.detach()
q, scale = impl.quantize.quantize_per_channel(w)
per_channel = impl.quantize.dequantize_per_channel(q, scale)
tensor_scale = w.abs().max() / 127
per_tensor = torch.round(w / tensor_scale).clamp(-127, 127) * tensor_scale


def row_error(approx):
    return ((approx - w).norm(dim=1) / w.norm(dim=1)).numpy()


print(f"relative error (Frobenius): per channel {((per_channel - w).norm() / w.norm()):.4f}, "
      f"per tensor {((per_tensor - w).norm() / w.norm()):.4f}")
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].hist(w.abs().amax(dim=1).numpy(), bins=40)
ax[0].set_xlabel("max |w| of a row"); ax[0].set_title("layers.0.mlp.down_proj: row sizes")
ax[1].plot(sorted(row_error(per_tensor)), label="per tensor")
ax[1].plot(sorted(row_error(per_channel)), label="per channel (yours)")
ax[1].set_yscale("log"); ax[1].set_xlabel("rows, sorted"); ax[1].set_ylabel("relative error of the row")
ax[1].legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Why the accumulator is int32
# K products of ±127: float16 overflows after five terms, float32 starts rounding past 2^24, int32 is exact.

# %%
for k in (4, 5, 1_039, 1_041, 4_097):
    xq = torch.full((1, k), 127, dtype=torch.int8)
    exact = 127 * 127 * k                                  # odd for odd K: not a float32 number past 2^24
    print(f"K={k:5d}: exact {exact:>11,d}   yours (int32) {int(impl.int8_matmul.int8_matmul(xq, xq)):>11,d}   "
          f"float32 {(xq.float() @ xq.float().t()).item():>13,.0f}   float16 {(xq.half() @ xq.half().t()).item()}")

# %% [markdown]
# ## 3. Activation outliers in the real model
# The largest |x| entering each layer's `q_proj` and `down_proj`, over 256 tokens of text. Per-token
# W8A8 uses that value for the token's scale; LLM.int8() moves every column with a value ≥ 6 to float.

# %%
ids = eval_token_ids(tok, max_tokens=512)
largest = {"q_proj": [0.0] * 30, "down_proj": [0.0] * 30}
outlier_cols = {"q_proj": [0] * 30, "down_proj": [0] * 30}
hooks = []
for i, layer in enumerate(model.layers):
    for kind, module in (("q_proj", layer.self_attn.q_proj), ("down_proj", layer.mlp.down_proj)):
        def hook(mod, inputs, out, i=i, kind=kind):
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            largest[kind][i] = x.abs().max().item()
            outlier_cols[kind][i] = impl.llm_int8.outlier_columns(x, 6.0).numel()
        hooks.append(module.register_forward_hook(hook))
with torch.inference_mode():
    model(torch.tensor(ids[:256])[None])
for h in hooks:
    h.remove()
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
for kind in largest:
    ax[0].semilogy(largest[kind], marker=".", label=kind)
    ax[1].plot(outlier_cols[kind], marker=".", label=kind)
ax[0].axhline(6, color="gray", linestyle="--", label="threshold 6")
ax[0].set_xlabel("layer"); ax[0].set_ylabel("max |x| of the input"); ax[0].legend()
ax[1].set_xlabel("layer"); ax[1].set_ylabel("outlier columns (yours)"); ax[1].legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Perplexity: int8 weights, W8A8, LLM.int8()
# Every projection replaced, on one window of 512 tokens (the README's table used 2,048). W8A8 and
# LLM.int8() wrap your functions in a small layer here.

# %%
class W8A8Linear(nn.Module):
    """Per-token int8 activations times per-channel int8 weights; `outliers=True` is LLM.int8()."""

    def __init__(self, linear: nn.Linear, outliers: bool):
        super().__init__()
        self.wq, self.w_scale = impl.quantize.quantize_per_channel(linear.weight.detach())
        self.outliers = outliers

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        if self.outliers:
            y = impl.llm_int8.llm_int8_matmul(flat, self.wq, self.w_scale)
        else:
            xq, x_scale = impl.quantize.quantize_per_token(flat)
            y = impl.int8_matmul.w8a8_matmul(xq, x_scale, self.wq, self.w_scale, out_dtype=x.dtype)
        return y.reshape(*x.shape[:-1], -1)


variants = {
    "fp32": model,
    "int8 weight-only": copy.deepcopy(model).replace_linears(lambda _, linear: impl.weight_only.Int8Linear.from_linear(linear)),
    "W8A8": copy.deepcopy(model).replace_linears(lambda _, linear: W8A8Linear(linear, outliers=False)),
    "LLM.int8()": copy.deepcopy(model).replace_linears(lambda _, linear: W8A8Linear(linear, outliers=True)),
}
ppl = {name: perplexity(m, ids[:512]) for name, m in variants.items()}
for name, value in ppl.items():
    print(f"{name:18s} perplexity {value:7.3f}  ({(value / ppl['fp32'] - 1) * 100:+.2f}% vs fp32)")
plt.figure(figsize=(6, 3))
plt.bar(list(ppl), list(ppl.values()), color=["gray", "C0", "C1", "C2"])
plt.ylim(min(ppl.values()) * 0.98, max(ppl.values()) * 1.01)
plt.ylabel("perplexity (lower is better)"); plt.title("SmolLM2-135M, 512 tokens"); plt.tight_layout(); plt.show()
del variants

# %% [markdown]
# ## 5. Speed: yours against the baseline
# On a GPU: your Triton W8A8 GEMM against cuBLAS bf16 at a large M, and your int8 GEMV against bf16 at
# batch 1 (the graded regimes, smaller here). On a CPU: your PyTorch paths against float32 `F.linear`.
# Each time is the median of several calls after warm-up calls (`lab.timing.median_seconds`); the bars
# are on a log axis, since the times can differ by 100x.
#
# Whether int8 wins on a CPU depends on its instructions: `torch._int_mm` runs oneDNN's int8 GEMM, fast
# where the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX), and slower than float32
# where it has only AVX2 (torch reports the vector level it uses as `get_cpu_capability()`).

# %%
results = {}
if torch.cuda.is_available():
    m_, k_, n_ = 4096, 4096, 14336
    wq = torch.randint(-127, 128, (n_, k_), device="cuda", dtype=torch.int8)
    w_scale = torch.rand(n_, device="cuda") / 100
    w_bf16 = torch.randn(n_, k_, device="cuda", dtype=torch.bfloat16)
    xq = torch.randint(-127, 128, (m_, k_), device="cuda", dtype=torch.int8)
    x_scale = torch.rand(m_, 1, device="cuda")
    x = torch.randn(m_, k_, device="cuda", dtype=torch.bfloat16)
    results["W8A8 GEMM, M=4096"] = (
        median_seconds(lambda: impl.int8_matmul.w8a8_matmul_triton(xq, x_scale, wq, w_scale)),
        median_seconds(lambda: F.linear(x, w_bf16)))
    x1 = torch.randn(1, k_, device="cuda", dtype=torch.bfloat16)
    results["GEMV, batch 1"] = (median_seconds(lambda: impl.weight_only.int8_linear_triton(x1, wq, w_scale)),
                                median_seconds(lambda: F.linear(x1, w_bf16)))
    baseline_name = "bf16 cuBLAS"
else:
    print("CPU vector level:", torch.backends.cpu.get_cpu_capability())
    k_, n_ = 1536, 1536
    wq, w_scale = impl.quantize.quantize_per_channel(torch.randn(n_, k_))
    w32 = torch.randn(n_, k_)
    x = torch.randn(64, k_)
    xq, x_scale = impl.quantize.quantize_per_token(x)
    results["W8A8, M=64"] = (
        median_seconds(lambda: impl.int8_matmul.w8a8_matmul(xq, x_scale, wq, w_scale, torch.float32)),
        median_seconds(lambda: F.linear(x, w32)))
    x1 = torch.randn(1, k_)
    results["weight-only, batch 1"] = (median_seconds(lambda: impl.weight_only.int8_linear(x1, wq, w_scale)),
                                       median_seconds(lambda: F.linear(x1, w32)))
    baseline_name = "fp32 F.linear"
for name, (yours, base) in results.items():
    print(f"{name:22s} yours {yours * 1e3:9.3f} ms   {baseline_name} {base * 1e3:9.3f} ms   "
          f"yours is {speedup_text(base / yours)}")
names = list(results)
plt.figure(figsize=(6, 3))
plt.bar([i - 0.2 for i in range(len(names))], [results[n][1] * 1e3 for n in names], 0.4, label=baseline_name)
plt.bar([i + 0.2 for i in range(len(names))], [results[n][0] * 1e3 for n in names], 0.4, label="yours (int8)")
plt.xticks(range(len(names)), names); plt.yscale("log"); plt.ylabel("ms (median, log scale)"); plt.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 6. The weight's layout matters as much as its dtype
# `torch._int_mm(a, b)` takes `b` as [K, N]. The weight is stored [N, K], so there are two ways to hand it
# over. `wq.t()` is a view, no copy: each output column's K codes lie next to each other in memory, as do
# each row of `a`'s, so the GEMM walks both operands along K in order (the "NT" layout that int8 GEMM
# kernels are built around). `wq.t().contiguous()` copies the weight into row-major [K, N]: now the K codes
# of one column lie N bytes apart, and the library must repack the weight on every call or take a slower
# path. Below, the copy is made once before timing, so the figure is the layout alone; on the lab's
# AVX2 CPU the copied layout was 3-12x slower, depending on the shapes and the load. A transpose that
# looks free can be the slowest line of a kernel: keep the weight in the layout the GEMM wants, once, at
# load time.

# %%
if not torch.cuda.is_available():
    wq_t, wq_t_copy = wq.t(), wq.t().contiguous()
    t_view = median_seconds(lambda: torch._int_mm(xq, wq_t), warmup=1, rounds=5)
    t_copy = median_seconds(lambda: torch._int_mm(xq, wq_t_copy), warmup=1, rounds=5)
    print(f"torch._int_mm, M=64, K={k_}, N={n_}: wq.t() (a view) {t_view * 1e3:.3f} ms, "
          f"wq.t().contiguous() {t_copy * 1e3:.3f} ms: the view is {speedup_text(t_copy / t_view)}")
    plt.figure(figsize=(5, 2.5))
    plt.barh(["wq.t().contiguous()\n(row-major [K, N])", "wq.t()\n(a view of [N, K])"], [t_copy * 1e3, t_view * 1e3],
             color=["C3", "C0"])
    plt.xscale("log"); plt.xlabel("ms (median, log scale)"); plt.title("the same int8 GEMM, two layouts of b")
    plt.tight_layout(); plt.show()
else:
    print("this cell times torch._int_mm on the CPU; on a GPU, section 5 timed your Triton kernels")

# %% [markdown]
# On a CPU the weight-only path converts the int8 weight to float32 on every call, so it is *slower*
# than float32 there: the saving of int8 weights needs a kernel that reads int8 and never writes a float
# copy, which is what your Triton GEMV does on a GPU (and what llama.cpp's Q8_0 kernels do on a CPU).
