# %% [markdown]
# # inf12 · Static batching — pad, batch, and count the waste
#
# This notebook runs **your** code from `exercises/inf12/`.
# It pads real chat prompts, generates their answers in one batch, checks
# them against one-at-a-time generation, measures the throughput of both, and draws the batch's padding.

# %%
import matplotlib.pyplot as plt
import torch

from lab.data import PROMPTS
from lab.impl import Topic, impl_root
from lab.readout import speedup_text
from lab.timing import median_seconds
from lab.tokenizer import load_tokenizer
from lab.weights import load_real_model

torch.manual_seed(0)
torch.set_num_threads(1)          # steadier timings on a shared machine; batching gains show on one core too
impl = Topic("inf12")
model = load_real_model().eval()
tok = load_tokenizer()
print("implementation:", impl_root(), "| model:", model.config.name)

# %% [markdown]
# ## 1. Left padding
# The last few tokens of three chat prompts, padded on the left: every prompt ends in the last column.
# Positions count each prompt's own tokens from 0; the mask hides the pads.

# %%
prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": text}])) for text in PROMPTS]
short = [p[-n:] for p, n in zip(prompts, (4, 7, 2))]                   # the last tokens of three prompts
ids, mask, positions = impl.padding.left_pad(short, pad_id=tok.eos_token_id)
print("input_ids\n", ids, "\nattention_mask\n", mask, "\npositions\n", positions)

# %% [markdown]
# ## 2. One batch against one prompt at a time
# Your `batched_greedy_generate` on the eight chat prompts, 24 new tokens at most, stopping on each
# answer's own end-of-turn token; then the same prompts one at a time (your function with a batch of 1).
# Each time is the median of three runs after a warm-up run.

# %%
max_new = 24
def run_batched():
    return impl.batch_generate.batched_greedy_generate(model, prompts, max_new, eos_token_id=tok.eos_token_id)


def run_alone():
    return [impl.batch_generate.batched_greedy_generate(model, [p], max_new, eos_token_id=tok.eos_token_id)[0]
            for p in prompts]


batched, alone = run_batched(), run_alone()
batch_s = median_seconds(run_batched, warmup=0, rounds=3)          # the line above was the warm-up
alone_s = median_seconds(run_alone, warmup=0, rounds=3)
for text, out, ref in zip(PROMPTS, batched, alone):
    print(f"{'same' if out == ref else 'DIFF'} | {text[:40]:40s} -> {tok.decode(out)!r:.70}")
num_tokens = sum(len(out) for out in batched)
print(f"{num_tokens} tokens: batch of {len(prompts)} {num_tokens / batch_s:.1f} tok/s, "
      f"one at a time {num_tokens / alone_s:.1f} tok/s (the batch is {speedup_text(alone_s / batch_s)})")

# %% [markdown]
# ## 3. Throughput over batch size
# The same 16 new tokens (no EOS stop) for batches of 1 to 8 prompts: each step reads the weights once,
# whatever the batch, so tokens per second climb while each step's time grows slowly. Medians of three.

# %%
sizes, rates = [1, 2, 4, 8], []
for batch in sizes:
    impl.batch_generate.batched_greedy_generate(model, prompts[:batch], 2)          # warm-up
    seconds = median_seconds(lambda: impl.batch_generate.batched_greedy_generate(model, prompts[:batch], 16),
                             warmup=0, rounds=3)
    rates.append(batch * 16 / seconds)
    print(f"batch {batch}: {rates[-1]:6.1f} tok/s")
plt.figure(figsize=(5, 3.2))
plt.plot(sizes, rates, marker="o", label="your batched generate")
plt.plot(sizes, [rates[0] * b for b in sizes], linestyle="--", color="gray", label="perfect scaling")
plt.xlabel("batch size"); plt.ylabel("tokens/s"); plt.legend(); plt.title("static batching on this CPU")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Padding waste
# The batch of section 2 as a grid of token slots: prompt (blue), answer (orange), waste (white). Rows
# that finish early keep their slots until the longest answer is done.

# %%
prompt_lens, output_lens = [len(p) for p in prompts], [len(o) for o in batched]
width = max(prompt_lens) + max(output_lens)
grid = torch.zeros(len(prompts), width)
for row, (p, o) in enumerate(zip(prompt_lens, output_lens)):
    grid[row, max(prompt_lens) - p:max(prompt_lens)] = 1
    grid[row, max(prompt_lens):max(prompt_lens) + o] = 2
waste = impl.padding.padding_waste(prompt_lens, output_lens)
plt.figure(figsize=(7, 2.6))
plt.imshow(grid, cmap=plt.matplotlib.colors.ListedColormap(["white", "tab:blue", "tab:orange"]), aspect="auto")
plt.xlabel("token slot"); plt.ylabel("sequence"); plt.title(f"padding waste {waste:.0%}")
plt.tight_layout(); plt.show()

# %% [markdown]
# Heavy-tailed answers make it worse: 16 requests of 40 prompt tokens, most answers short and a few
# long. Sorting requests by expected length helps a little; continuous batching (inf30) retires each
# sequence when it is done and fills its row with a new request.

# %%
outs = torch.distributions.LogNormal(3.5, 1.0).sample((16,)).clamp(max=1000).long().tolist()
print("output lengths:", sorted(outs))
print(f"one batch of 16: waste {impl.padding.padding_waste([40] * 16, outs):.0%}")
by_len = sorted(outs)
halves = [impl.padding.padding_waste([40] * 8, by_len[:8]), impl.padding.padding_waste([40] * 8, by_len[8:])]
print(f"two batches of 8, sorted by length: waste {halves[0]:.0%} and {halves[1]:.0%}")
