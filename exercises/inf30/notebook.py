# %% [markdown]
# # inf30 · Continuous batching — schedule every step, retire at once, pack prefills with decodes
#
# This notebook runs **your** code from `exercises/inf30/`.
# It serves real chat requests arriving over time, shows the plans your
# scheduler made, then counts and times continuous batching against static batching (`lab.static_batch`,
# inf12's approach) on heavy-tailed output lengths.

# %%
import time

import matplotlib.pyplot as plt
import torch

from lab.data import PROMPTS
from lab.impl import Topic, impl_root
from lab.kv_slots import SlotCounter
from lab.readout import speedup_text
from lab.static_batch import static_generate
from lab.testing import random_config, random_lab_model
from lab.timing import median_seconds
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(1)          # steadier timings on a shared machine
impl = Topic("inf30")
Request, SchedulerConfig = impl.scheduler.Request, impl.scheduler.SchedulerConfig
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)

# %% [markdown]
# ## 1. Requests arriving over time
# Five chat prompts arrive at steps 0, 0, 2, 4 and 6. A budget of 48 tokens per forward cuts the longer
# prompts into chunks; memory for 150 tokens forces a preemption. Each plan is plain data: which request
# gets how many tokens from which position.

# %%
prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": text}])) for text in PROMPTS[:5]]
requests = [Request(i, p, 12, arrival_step=step) for i, (p, step) in enumerate(zip(prompts, (0, 0, 2, 4, 6)))]
start = time.perf_counter()
result = impl.generate.continuous_generate(model, requests, SchedulerConfig(max_num_batched_tokens=48, max_num_seqs=4),
                                           SlotCounter(150), eos_token_id=tok.eos_token_id)
print(f"{result.num_forwards} forwards, {result.num_preemptions} preemptions, {time.perf_counter() - start:.1f} s")
for step, plan in enumerate(result.plans[:10]):
    print(f"step {step:2d}: {plan.num_tokens:3d} tokens |",
          " ".join(f"r{c.request_id}[{c.start_position}:+{len(c.token_ids)}]{'*' if c.is_sampling else ''}"
                   for c in plan.chunks), f"| preempted {list(plan.preempted_ids)}" if plan.preempted_ids else "")
for r in requests:
    print(f"r{r.request_id} (step {r.arrival_step} -> {result.finish_step[r.request_id]}): "
          f"{tok.decode(result.outputs[r.request_id])!r:.70}")

# %% [markdown]
# ## 2. Heavy-tailed outputs: who is busy at each step?
# 96 requests with lognormal output lengths (median 8, up to 128), 8 running at most, on a small random
# model (the count of forwards does not depend on the model). Static batching keeps a row until its
# batch's longest request is done; continuous batching refills it at once.

# %%
gen = torch.Generator().manual_seed(0)
small = random_lab_model(random_config(gen, num_layers=1), gen)
lengths = torch.distributions.LogNormal(torch.tensor(8.0).log(), 1.0).sample((96,)).round().clamp(1, 128).int()
heavy = [Request(i, torch.randint(small.config.vocab_size, (int(torch.randint(4, 25, (1,))),)).tolist(), int(n))
         for i, n in enumerate(lengths)]
cont = impl.generate.continuous_generate(small, heavy, SchedulerConfig(256, 8))
busy_cont = [sum(1 for c in plan.chunks) for plan in cont.plans]
busy_static = []
for first in range(0, len(heavy), 8):
    batch = [r.max_new_tokens for r in heavy[first:first + 8]]
    busy_static += [sum(1 for n in batch if n > t) for t in range(max(batch))]
print(f"forwards: static {len(busy_static)}, continuous {cont.num_forwards} "
      f"({len(busy_static) / cont.num_forwards:.2f}x fewer); mean busy rows {sum(busy_static) / len(busy_static):.1f} "
      f"vs {sum(busy_cont) / len(busy_cont):.1f} of 8")
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(busy_static, label=f"static batches of 8 ({len(busy_static)} forwards)", drawstyle="steps-post")
ax.plot(busy_cont, label=f"your continuous batching ({cont.num_forwards} forwards)", drawstyle="steps-post")
ax.set_xlabel("forward"); ax.set_ylabel("requests doing useful work"); ax.set_ylim(0, 9); ax.legend()
plt.show()

# %% [markdown]
# ## 3. Wall time on the real model
# 16 of those heavy-tailed requests (output lengths capped at 40 to keep this quick), 8 at a time, real
# SmolLM2 on this CPU: tokens per second of your continuous batching against static batching, each the
# median of three runs after a warm-up run.

# %%
few = [Request(r.request_id, prompts[r.request_id % 5][-16:], min(r.max_new_tokens, 40)) for r in heavy[:16]]
num_tokens = sum(r.max_new_tokens for r in few)
ours = impl.generate.continuous_generate(model, few, SchedulerConfig(256, 8))
theirs = static_generate(model, few, 8)
cont_s = median_seconds(lambda: impl.generate.continuous_generate(model, few, SchedulerConfig(256, 8)),
                        warmup=0, rounds=3)                     # the two lines above were the warm-up
static_s = median_seconds(lambda: static_generate(model, few, 8), warmup=0, rounds=3)
same = sum(ours.outputs[r.request_id] == theirs[r.request_id] for r in few)
print(f"{num_tokens} tokens, {same}/{len(few)} requests identical: continuous {num_tokens / cont_s:.1f} tok/s "
      f"({ours.num_forwards} forwards), static {num_tokens / static_s:.1f} tok/s: yours is "
      f"{speedup_text(static_s / cont_s)}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(["static (lab)", "continuous (yours)"], [num_tokens / static_s, num_tokens / cont_s], color=["C0", "C1"])
ax.set_ylabel("tokens / s"); ax.set_title("SmolLM2-135M fp32, 16 requests, CPU")
plt.show()

# %% [markdown]
# On a GPU the same experiment (the Llama-3.2-1B shape, 96 requests) is `test_continuous_batching_beats_static_tokens_per_s`.
# Things to try: a budget of 16 tokens (more, smaller prefill chunks: more forwards, smoother decode
# latency); memory for two requests (`SlotCounter`) and count preemptions; `max_num_seqs` 1 (continuous
# batching degenerates to one request at a time).
