# %% [markdown]
# # inf31 · PagedAttention — how much memory paging saves, what fragmentation looks like, and whether the attention agrees
#
# This notebook runs **your** code from `exercises/inf31/`.
# It drives your `BlockAllocator` through a serving-like workload and
# compares the memory it holds with a preallocated cache (inf10), draws the block pool as it fragments,
# and checks your paged attention (PyTorch and Triton) against contiguous attention. On a CPU the Triton
# kernel runs in the Triton interpreter, so the first cell sets `TRITON_INTERPRET=1` before anything imports
# Triton; on a GPU it runs natively and is timed against SDPA.

# %%
import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"        # read when Triton is first imported: before the topic's code is

import math

import matplotlib.pyplot as plt

from lab.impl import Topic, impl_root
from lab.testing import naive_attention

torch.manual_seed(0)
impl = Topic("inf31")
BlockAllocator = impl.block_allocator.BlockAllocator
OutOfBlocksError = impl.block_allocator.OutOfBlocksError
print("implementation:", impl_root(), "| device:", "cuda" if torch.cuda.is_available() else "cpu (Triton interpreter)")

# %% [markdown]
# ## 1. Memory held: paged vs preallocated, over a running workload
# Requests arrive over time with a long-tailed final length (log-normal, mean ~455 tokens, capped at
# max_len = 2,048), each grows by one token per step until it reaches its length, then finishes. The pool
# holds what a preallocated cache of 24 sequences × 2,048 tokens holds. The preallocated cache admits a
# request only if a whole max_len slot row is free; the paged one admits whenever `can_allocate` says yes
# and grows with `append_slots`; when a sequence cannot grow, the newest running one is preempted (its blocks
# freed, recomputed later), as inf30's scheduler does.

# %%
MAX_LEN, NUM_ROWS, STEPS = 2048, 24, 2500
POOL_TOKENS = MAX_LEN * NUM_ROWS
gen = torch.Generator().manual_seed(31)
lengths = (torch.distributions.LogNormal(5.8, 0.8).sample((20_000,)).long() + 1).clamp(max=MAX_LEN).tolist()
prompts = [max(1, n // 2) for n in lengths]


def run_workload(block_size: int | None):
    """Tokens stored and slots held per step, requests finished, mean running. block_size None = preallocated
    rows of MAX_LEN. A paged sequence that cannot grow preempts the newest running one (which starts over)."""
    alloc = BlockAllocator(POOL_TOKENS // block_size, block_size) if block_size else None
    waiting, running = list(range(len(lengths)))[::-1], {}            # waiting: a stack, next request last
    stored, held, num_running, finished = [], [], [], 0
    for step in range(STEPS):
        for seq_id in [s for s, n in running.items() if n >= lengths[s]]:
            del running[seq_id]
            finished += 1
            if alloc:
                alloc.free(seq_id)
        while waiting:                                                  # admit while there is room
            seq_id = waiting[-1]
            fits = len(running) < NUM_ROWS if alloc is None else alloc.can_allocate(prompts[seq_id] + 1)
            if not fits:
                break
            if alloc:
                alloc.allocate(waiting.pop(), prompts[seq_id])
            else:
                waiting.pop()
            running[seq_id] = prompts[seq_id]
        for seq_id in sorted(running):                                  # one decode step, oldest first
            if seq_id not in running or running[seq_id] >= lengths[seq_id]:
                continue
            while alloc and not alloc.can_append(seq_id, 1):
                victim = max(running)                                   # preempt the newest (recompute later)
                alloc.free(victim)
                del running[victim]
                waiting.append(victim)
                if victim == seq_id:
                    break
            if seq_id in running:
                if alloc:
                    alloc.append_slots(seq_id, 1)
                running[seq_id] += 1
        stored.append(sum(running.values()))
        held.append(POOL_TOKENS if alloc is None else (alloc.num_blocks - alloc.num_free_blocks) * block_size)
        num_running.append(len(running))
    return stored, held, finished, sum(num_running) / STEPS


results = {"preallocated": run_workload(None), **{f"paged, block {b}": run_workload(b) for b in (16, 64)}}
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
for name, (stored, held, finished, mean_running) in results.items():
    use = sum(stored) / sum(held)
    print(f"{name:>16}: {finished:5d} requests finished in {STEPS} steps, {mean_running:5.1f} running on average, "
          f"KV memory holding tokens {use:6.1%}")
    ax[0].plot(stored, label=name)
ax[0].axhline(POOL_TOKENS, color="k", lw=0.8, ls="--", label="pool")
ax[0].set_xlabel("step"); ax[0].set_ylabel("tokens stored"); ax[0].legend(); ax[0].set_title("tokens in the same memory")
ax[1].bar(list(results), [r[2] for r in results.values()])
ax[1].set_ylabel("requests finished"); ax[1].set_title(f"{STEPS} steps, same memory")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. Waste per sequence and fragmentation
# Paged waste is the unfilled tail of each sequence's last block: under one block, so at most
# block_size - 1 slots per sequence, half a block on average. The pool itself fragments (a sequence's blocks
# end up anywhere) but that costs nothing: any free block serves any sequence, so there is no external
# fragmentation to compact. Below: the owner of every block of a 256-block pool after a few hundred random
# allocate / append / fork / free operations (white = free, grey = shared by a fork).

# %%
alloc = BlockAllocator(256, 8)
live = []
g = torch.Generator().manual_seed(5)
for op in range(400):
    r = torch.rand(1, generator=g).item()
    try:
        if r < 0.35 or not live:
            seq_id = op
            alloc.allocate(seq_id, int(torch.randint(1, 60, (1,), generator=g)))
            live.append(seq_id)
        elif r < 0.7:
            alloc.append_slots(live[int(torch.randint(len(live), (1,), generator=g))], int(torch.randint(1, 20, (1,), generator=g)))
        elif r < 0.78:
            alloc.fork(live[int(torch.randint(len(live), (1,), generator=g))], op)
            live.append(op)
        else:
            alloc.free(live.pop(int(torch.randint(len(live), (1,), generator=g))))
    except OutOfBlocksError:
        alloc.free(live.pop(0))                                  # make room, as a scheduler would preempt
owner = torch.full((256,), float("nan"))
for seq_id in alloc.tables:
    for b in alloc.block_table(seq_id):
        owner[b] = -1 if alloc.ref_counts[b] > 1 else (seq_id * 37) % 100
waste = [len(alloc.block_table(s)) * alloc.block_size - alloc.seq_lens[s] for s in alloc.tables]
print(f"{len(alloc.tables)} sequences, {alloc.num_free_blocks} free blocks; waste per sequence: max {max(waste)}, "
      f"mean {sum(waste) / len(waste):.1f} slots (block_size {alloc.block_size})")
fig, ax = plt.subplots(1, 2, figsize=(11, 3))
cmap = plt.get_cmap("tab20").copy(); cmap.set_bad("white"); cmap.set_under("grey")
ax[0].imshow(owner.view(8, 32).numpy(), cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
ax[0].set_title("block pool: colour = owning sequence"); ax[0].axis("off")
ax[1].hist(waste, bins=range(alloc.block_size + 1)); ax[1].set_xlabel("unused slots in the last block")
ax[1].set_ylabel("sequences"); ax[1].set_title("waste per sequence (< one block)")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. Paged vs contiguous attention
# Sequences of different lengths written into the pool with your allocator and `write_kv`, then decoded
# with your `paged_attention` (PyTorch) and `paged_attention_triton`, against attention by the book in
# float64 over the same K/V kept contiguous.

# %%
device = "cuda" if torch.cuda.is_available() else "cpu"
num_kv_heads, group, head_dim, block_size = 2, 3, 16, 5
lens = [1, 23, 64, 97] if device == "cpu" else [1, 230, 1500, 4097]
alloc = BlockAllocator(sum(-(-n // block_size) for n in lens) + 4, block_size)
k_cache = torch.zeros(alloc.num_blocks, block_size, num_kv_heads, head_dim, device=device)
v_cache = torch.zeros_like(k_cache)
keys, values = [], []
for seq_id, n in enumerate(lens):
    table = alloc.allocate(seq_id, n)
    slots = torch.tensor([table[t // block_size] * block_size + t % block_size for t in range(n)], device=device)
    k, v = torch.randn(n, num_kv_heads, head_dim, device=device), torch.randn(n, num_kv_heads, head_dim, device=device)
    impl.paged_attention.write_kv(k_cache, v_cache, k, v, slots)
    keys.append(k); values.append(v)
width = max(len(alloc.block_table(s)) for s in range(len(lens)))
tables = torch.tensor([alloc.block_table(s) + [0] * (width - len(alloc.block_table(s))) for s in range(len(lens))],
                      device=device)
context_lens = torch.tensor(lens, device=device)
q = torch.randn(len(lens), num_kv_heads * group, head_dim, device=device)
want = torch.stack([naive_attention(q[i].double()[None, :, None], keys[i].double().transpose(0, 1)[None],
                                    values[i].double().transpose(0, 1)[None], None)[0, :, 0] for i in range(len(lens))])
errors = {}
for name in ("paged_attention", "paged_attention_triton"):
    try:
        got = getattr(impl.paged_attention, name)(q, k_cache, v_cache, tables, context_lens)
        errors[name] = (got.double() - want).abs().amax(dim=(1, 2)).cpu()
        print(f"{name:>23}: max error {errors[name].max():.2e} against float64 contiguous attention")
    except NotImplementedError as e:
        print(f"{name:>23}: {e}")
if errors:
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, (name, err) in enumerate(errors.items()):
        ax.bar([x + 0.4 * i for x in range(len(lens))], err.clamp(min=1e-12).numpy(), width=0.4, label=name)
    ax.set_xticks(range(len(lens)), [f"len {n}" for n in lens]); ax.set_yscale("log")
    ax.set_ylabel("max |error|"); ax.legend(); ax.set_title("paged vs contiguous (float32 vs float64)")
    plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. On a GPU: your kernel against SDPA on contiguous K/V
# `python -m lab.paged_bench` prints the full table (GB/s and fraction of copy bandwidth); here one point:
# Llama-3-8B attention shape, batch 16, 4,096 tokens, bf16, blocks of 16.

# %%
if torch.cuda.is_available():
    import torch.nn.functional as F

    from lab.paged_bench import paged_inputs
    from lab.timing import median_seconds
    k_cache, v_cache, tables, lens, k, v = paged_inputs(16, 4096, 16)
    make_q = lambda: (torch.randn(16, 32, 128, device="cuda", dtype=torch.bfloat16),)  # noqa: E731
    t_sdpa = median_seconds(lambda q: F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True), make_q)
    t_paged = median_seconds(lambda q: impl.paged_attention.paged_attention_triton(q, k_cache, v_cache, tables, lens),
                             make_q)
    nbytes = 2 * k.numel() * 2
    print(f"SDPA contiguous {t_sdpa * 1e3:.3f} ms ({nbytes / t_sdpa / 1e9:,.0f} GB/s); yours paged {t_paged * 1e3:.3f} ms "
          f"({nbytes / t_paged / 1e9:,.0f} GB/s): {t_sdpa / t_paged:.2f}x SDPA's speed")
    plt.bar(["SDPA (contiguous)", "yours (paged)"], [nbytes / t_sdpa / 1e9, nbytes / t_paged / 1e9])
    plt.ylabel("GB/s of K/V read"); plt.show()
else:
    print("no GPU here: run this cell on one (or `python -m lab.paged_bench`)")
