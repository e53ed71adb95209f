# %% [markdown]
# # inf13 · torch.compile — one graph, compiled once, replayed every token
#
# This notebook runs **your** code from `exercises/inf13/`.
# It shows a graph break and a recompile with your `CompileWatch`, then
# compiles your decode step for a small random model and times it against the eager step. On a CPU the
# first compile takes up to a minute; on a GPU the same cells use CUDA graphs ("reduce-overhead").

# %%
import logging
import time

import matplotlib.pyplot as plt
import torch

from lab.cache import StaticCache
from lab.config import ModelConfig
from lab.impl import Topic, impl_root
from lab.weights import random_model

torch.manual_seed(0)
torch.set_num_threads(1)             # batch-1 steps of a small model are overhead-bound: one thread is enough
logging.getLogger("torch._dynamo").setLevel(logging.ERROR)        # the breaks are printed below, once
impl = Topic("inf13")
device = "cuda" if torch.cuda.is_available() else "cpu"
config = ModelConfig(name="small", vocab_size=2048, hidden_size=128, intermediate_size=384, num_layers=4,
                     num_heads=4, num_kv_heads=2, head_dim=32, max_position_embeddings=1024)
model = random_model(config, torch.float32 if device == "cpu" else torch.bfloat16, device)
print("implementation:", impl_root(), "| device:", device, f"| model: {config.num_layers} layers, "
      f"{model.weight_bytes() / 1e6:.0f} MB")

# %% [markdown]
# ## 1. Graph breaks
# A step that checks the cache bound with `.item()`, or logs with `print`, cannot be traced whole.

# %%
def step_with_a_check(token_ids, cache_position):
    if cache_position.max().item() >= 1024:                 # .item(): a number the host must wait for
        raise ValueError("cache full")
    return token_ids * 2

for reason in impl.compile_watch.graph_break_reasons(step_with_a_check, torch.ones(1, 1), torch.tensor([3])):
    print("break:", reason.splitlines()[0])

# %% [markdown]
# ## 2. Recompiles
# A position passed as a Python int is a constant to dynamo: with static shapes, every new value is a new
# graph. As a tensor, it is data: one graph serves every step. (`backend="eager"` traces without
# compiling kernels, to keep this cell fast.)

# %%
def shift_by_int(x, position: int):
    return x + position

def shift_by_tensor(x, position: torch.Tensor):
    return x + position

x = torch.zeros(4)
for name, fn, as_input in (("Python int", shift_by_int, int), ("tensor", shift_by_tensor, lambda p: torch.tensor([p]))):
    compiled = torch.compile(fn, backend="eager", dynamic=False)
    with impl.compile_watch.CompileWatch() as watch:
        for position in range(6):
            compiled(x, as_input(position))
    print(f"position as a {name:10s}: {watch.num_graphs} graphs compiled for 6 calls")

# %% [markdown]
# ## 3. Your decode step, eager and compiled
# A prompt of 32 tokens prefilled into two static caches; then 48 greedy tokens with your eager step and
# with your compiled one (compiling happens in the first call: its time is shown apart).

# %%
prompt_len, num_steps = 32, 48
prompt = torch.randint(config.vocab_size, (1, prompt_len), device=device)
dtype = next(model.parameters()).dtype

def prefilled():
    cache = StaticCache(config, 1, prompt_len + num_steps + 1, dtype, device)
    with torch.no_grad():
        logits = model(prompt, cache=cache, cache_position=torch.arange(prompt_len, device=device))
    return cache, logits[:, -1].argmax(-1, keepdim=True)

(eager_cache, first), (compiled_cache, _) = prefilled(), prefilled()
eager = impl.decode_step.make_decode_step(model, eager_cache)
mode = "reduce-overhead" if device == "cuda" else "default"
compiled = impl.decode_step.compile_decode_step(impl.decode_step.make_decode_step(model, compiled_cache), mode)
start = time.perf_counter()
for _ in range(3):                                  # compile (and, on a GPU, record the CUDA graph)
    impl.decode_step.greedy_decode(compiled, first, prompt_len, 2)
print(f"compile ({mode}): {time.perf_counter() - start:.1f} s")

# %%
def ms_per_token(step, repeats=3):
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = impl.decode_step.greedy_decode(step, first, prompt_len, num_steps)
        tokens.tolist()                                     # waits for the device
        times.append((time.perf_counter() - start) / num_steps * 1e3)
    return sorted(times)[len(times) // 2], tokens

eager_ms, eager_tokens = ms_per_token(eager)
compiled_ms, compiled_tokens = ms_per_token(compiled)
same = next((i for i, (a, b) in enumerate(zip(eager_tokens[0].tolist(), compiled_tokens[0].tolist())) if a != b), num_steps)
print(f"eager {eager_ms:.2f} ms/token, compiled {compiled_ms:.2f} ms/token ({eager_ms / compiled_ms:.1f}x); "
      f"same tokens for the first {same} of {num_steps}")
plt.figure(figsize=(4.5, 3))
plt.bar(["eager step", f"compiled ({mode})"], [eager_ms, compiled_ms], color=["gray", "tab:green"])
plt.ylabel("ms per token"); plt.title(f"batch-1 decode on {device}"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Where a fast decoder stands: memory-bandwidth utilization
# Batch-1 decode must read every weight once per token. On the H200 (4.3 TB/s), a Llama-3-8B shape in
# bf16 reads 15.04 GB per token: at most 286 tokens/s. `python -m lab.decode_bench` measures your
# decoder there; the published and measured figures below set the bar.

# %%
ceiling = 286
rows = {"transformers eager": 45, "transformers compiled": 132, "gpt-fast": 184, "ceiling (4.3 TB/s)": ceiling}
plt.figure(figsize=(6, 3))
plt.barh(list(rows), list(rows.values()), color=["gray", "tab:blue", "tab:green", "black"])
for i, value in enumerate(rows.values()):
    plt.text(value + 3, i, f"{value} tok/s ({value / ceiling:.0%})", va="center", fontsize=8)
plt.xlim(0, 360); plt.xlabel("tokens/s, Llama-3-8B shape, bf16, batch 1, H200")
plt.tight_layout(); plt.show()
