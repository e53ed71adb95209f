"""inf30 continuous generation tests: every request's tokens as if it ran alone (real model and float64 random
models), idle gaps, and the point of it all: fewer forwards (CPU, counted) and more tokens/s (GPU) than
static batching on heavy-tailed output lengths."""

import pytest
import torch

from lab.figures import one_cpu_thread
from lab.impl import Topic
from lab.kv_slots import SlotCounter
from lab.static_batch import static_generate
from lab.testing import greedy_alone, pick, random_config, random_lab_model
from lab.timing import compare

from .test_runner import CountingModel

impl = Topic("inf30")

# Logits of a request packed with others and alone differ in the last bits (fp32 sums over another matrix
# shape); where the greedy tokens part, the two candidates must be this close in the alone run (a real tie).
TIE_GAP = 2e-3
# Heavy-tailed outputs (lognormal, median 8, sigma 1, up to 128) of 96 requests, 8 at a time: static batching
# runs each batch of 8 for its longest member. Measured over 30 workload seeds: 1.92x to 2.9x (median 2.5x)
# fewer forwards for the reference; a static scheduler gets ~1.0x. Exact counts, so the CPU threshold is safe.
STEP_RATIO, NUM_REQUESTS, MAX_RUNNING = 1.5, 96, 8
# GPU tokens/s on the same kind of workload, Llama-3.2-1B shape in bf16 (CURRICULUM: >= 1.5x). With lengths drawn
# afresh each round an H100 measured 1.79-2.49x in one process: static batching's waste depends on the lengths
# drawn. So the lengths are fixed and only the prompts' tokens are fresh each round. 1.4x: with 64 requests at
# workload seed 7 (263 static forwards, 101 continuous) three processes on an H100 measured 1.70-1.75x, but ten
# measurements a side took ~410 s (docs/thresholds.md, inf30). Now 28 requests at workload seed 6121, picked from
# 10,000 seeds (top 2%) for half the forwards at a larger ratio: 141 static, 46 continuous (3.07x). Predicted on
# an H100: 2.0-2.1x; measured there (2026-12-07, three processes, 4+3+3, 274 s): 1.95-2.22x (median 2.13),
# static-batches 0.82-0.92x (docs/thresholds.md, session 8). The 1B shape's first 8 layers with 1 + 2
# rounds failed there (session 5: 351 s, 1.44-1.77x; the steps are bound by per-step Python work, not layers).
# With 2 timed rounds (was 3) on this workload: 2.00-2.29x (median 2.13), static-batches <= 0.92x, no flip,
# 230 s with gpu_check's forked processes (H100, session 10).
GPU_SPEEDUP, GPU_SHAPE, GPU_REQUESTS, GPU_WORKLOAD_SEED = 1.4, "llama-3.2-1b", 28, 6121


def inf03_workload():
    """The student's own inf03 workload module: a later topic builds on the earlier ones, through the impl
    switch (a planted version's root holds every topic's reference, so it finds one too)."""
    return Topic("inf03").workload


def heavy_tailed_requests(seed: int, num: int, vocab_size: int, max_prompt: int = 24):
    """Requests drawn with the inf03 workload (lognormal output lengths, uniform prompts)."""
    inf03 = inf03_workload()
    workload = inf03.make_workload(num, inf03.LengthDistribution.uniform(4, max_prompt),
                                   inf03.LengthDistribution.lognormal(8, 1.0, 1, 128), vocab_size, seed)
    return [impl.scheduler.Request(r.request_id, r.prompt_ids, r.max_new_tokens) for r in workload.requests]


@pytest.fixture(autouse=True)
def one_thread():
    """Small forwards run many tiny parallel regions: one thread is several times faster on a busy 2-core CPU
    (inf12 measured 8 s against 44 s); on a GPU it changes nothing."""
    with one_cpu_thread():
        yield


def assert_same_as_alone(result, requests, alone, tie_gap=0.0):
    outputs = getattr(result, "outputs", None)
    assert isinstance(outputs, dict) and set(outputs) == {r.request_id for r in requests}, \
        f"expected result.outputs with one entry per request id, got {outputs!r:.120}"
    for r in requests:
        got, (want, logits) = outputs[r.request_id], alone[r.request_id]
        assert isinstance(got, list) and all(isinstance(t, int) for t in got), \
            f"request {r.request_id}: expected a list of ints, got {got!r:.80}"
        split = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if split is not None:
            gap = (logits[split, want[split]] - logits[split, got[split]]).item()
            assert gap <= tie_gap, (
                f"request {r.request_id} ({len(r.prompt_ids)}-token prompt, arrives at step {r.arrival_step}): token "
                f"{split} is {got[split]}, alone it is {want[split]} (logit gap {gap:.3g}, not a tie). "
                f"Expected {want}, got {got}")
            continue                                    # a genuine near-tie: the rest may legitimately differ
        assert got == want, (f"request {r.request_id} ({len(r.prompt_ids)}-token prompt): alone it generates "
                             f"{len(want)} tokens {want}, got {len(got)}: {got}")


def test_continuous_generate_matches_each_request_alone_on_the_real_model(real_model, tokenizer, rng):
    """SmolLM2 float32: a chat prompt answered with an EOS early, plain-text and random prompts, arriving over
    5 steps; a budget that cuts the chat prompt into chunks; memory for about two requests (preemption)."""
    from lab.data import PROMPTS
    texts = [PROMPTS[i] for i in torch.randperm(len(PROMPTS), generator=rng)[:2].tolist()]
    prompts = [tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": "What is 12 plus 30?"}]))]
    prompts += [tokenizer.encode(t) for t in texts]
    prompts.append(torch.randint(tokenizer.vocab_size, (pick(rng, 3, 9),), generator=rng).tolist())
    requests = [impl.scheduler.Request(i, p, pick(rng, 4, 7), arrival_step=pick(rng, 0, 5))
                for i, p in enumerate(prompts)]
    eos = tokenizer.eos_token_id
    biggest = max(len(r.prompt_ids) + r.max_new_tokens for r in requests)
    config = impl.scheduler.SchedulerConfig(max_num_batched_tokens=pick(rng, 17, 29), max_num_seqs=3)
    # the oracle first, from the test's own prompts: continuous_generate must not change what it was given
    alone = {r.request_id: greedy_alone(real_model, prompts[r.request_id], r.max_new_tokens, eos) for r in requests}
    result = impl.generate.continuous_generate(real_model, requests, config, SlotCounter(biggest + 12), eos)
    assert_same_as_alone(result, requests, alone, TIE_GAP)


def test_continuous_generate_matches_alone_with_arrivals_eos_and_preemption(rng):
    """float64 random models (exact): random arrivals, an EOS that ends some requests early, tight memory."""
    preemptions = 0
    for _ in range(3):
        config = random_config(rng)
        model = random_lab_model(config, rng, torch.float64)
        requests = [impl.scheduler.Request(i, torch.randint(config.vocab_size, (pick(rng, 1, 19),),
                                                            generator=rng).tolist(),
                                           pick(rng, 1, 12), arrival_step=pick(rng, 0, 6))
                    for i in range(pick(rng, 5, 11))]
        probe = {r.request_id: greedy_alone(model, r.prompt_ids, r.max_new_tokens)[0] for r in requests}
        eos = next(iter(probe.values()))[min(2, len(next(iter(probe.values()))) - 1)]   # a token some request makes
        biggest = max(len(r.prompt_ids) + r.max_new_tokens for r in requests)
        sched = impl.scheduler.SchedulerConfig(max_num_batched_tokens=pick(rng, 6, 25), max_num_seqs=pick(rng, 3, 6))
        alone = {r.request_id: greedy_alone(model, r.prompt_ids, r.max_new_tokens, eos) for r in requests}   # before
        result = impl.generate.continuous_generate(model, requests, sched, SlotCounter(biggest + pick(rng, 0, 8)), eos)
        assert_same_as_alone(result, requests, alone)
        preemptions += result.num_preemptions
    assert preemptions > 0, "tight memory in three workloads, yet result.num_preemptions is 0 in all"


def test_idle_gaps_cost_no_forward_and_late_requests_wait_for_their_step(rng):
    """Two requests far apart in time: the forwards are those of each alone, the second finishes after it arrives."""
    config = random_config(rng)
    model = CountingModel(random_lab_model(config, rng, torch.float64))
    first_new, late_new, gap = pick(rng, 2, 5), pick(rng, 2, 5), pick(rng, 20, 40)
    requests = [impl.scheduler.Request(0, [1, 2, 3], first_new),
                impl.scheduler.Request(1, [4, 5], late_new, arrival_step=gap)]
    result = impl.generate.continuous_generate(model, requests)
    assert len(model.shapes) == first_new + late_new, (
        f"request 0 needs {first_new} forwards, request 1 (arriving at step {gap}) {late_new}: expected "
        f"{first_new + late_new} forwards in all (no forward while nothing runs), got {len(model.shapes)}")
    assert result.num_forwards == len(model.shapes), \
        f"result.num_forwards says {result.num_forwards}, the model ran {len(model.shapes)} forwards"
    assert result.finish_step.get(0) == first_new - 1 and result.finish_step.get(1) == gap + late_new - 1, (
        f"expected finish steps {{0: {first_new - 1}, 1: {gap + late_new - 1}}} (the clock jumps to an arrival), "
        f"got {result.finish_step}")


@pytest.mark.speed
def test_continuous_batching_needs_fewer_forwards_than_static(rng):
    """CPU-meaningful and exact: 96 heavy-tailed requests, at most 8 running, counted forwards of a small
    float64 model against static batches of 8 (the same greedy tokens)."""
    config = random_config(rng, num_layers=1)
    model = random_lab_model(config, rng, torch.float64)
    requests = heavy_tailed_requests(pick(rng, 0, 2**31 - 1), NUM_REQUESTS, config.vocab_size)
    continuous, static = CountingModel(model), CountingModel(model)
    result = impl.generate.continuous_generate(continuous, requests, impl.scheduler.SchedulerConfig(256, MAX_RUNNING))
    want = static_generate(static, requests, MAX_RUNNING)
    for r in requests:
        assert result.outputs[r.request_id] == want[r.request_id], \
            (f"request {r.request_id}: static batching gives {want[r.request_id]}, continuous "
             f"{result.outputs[r.request_id]}")
    ratio = len(static.shapes) / len(continuous.shapes)
    assert ratio >= STEP_RATIO, (
        f"static batching ran {len(static.shapes)} forwards, continuous batching {len(continuous.shapes)}: "
        f"{ratio:.2f}x fewer, expected >= {STEP_RATIO}x. Do finished requests leave at once, and do waiting "
        f"ones join as soon as a slot frees?")


@pytest.mark.gpu
@pytest.mark.speed
def test_continuous_batching_beats_static_tokens_per_s(benchmark, record_property, rng):
    """Llama-3.2-1B shape, bf16, 28 heavy-tailed requests (fixed lengths, fresh prompt tokens per round), 8
    running: tokens/s of continuous batching against static batches of 8 in the same run."""
    from lab.weights import random_model
    model = random_model(GPU_SHAPE, torch.bfloat16, device="cuda")
    shape = heavy_tailed_requests(GPU_WORKLOAD_SEED, GPU_REQUESTS, model.config.vocab_size, 128)

    def make_inputs():
        fresh = [torch.randint(0, model.config.vocab_size, (len(r.prompt_ids),), generator=rng).tolist() for r in shape]
        return ([impl.scheduler.Request(r.request_id, ids, r.max_new_tokens) for r, ids in zip(shape, fresh)],)

    def check(result, args):
        lengths = {r.request_id: r.max_new_tokens for r in args[0]}
        got = {k: len(v) for k, v in result.outputs.items()}
        assert got == lengths, "every request must get exactly max_new_tokens tokens (no EOS here)"

    result = compare(lambda requests: impl.generate.continuous_generate(
                         model, requests, impl.scheduler.SchedulerConfig(512, MAX_RUNNING)),
                     lambda requests: static_generate(model, requests, MAX_RUNNING),
                     threshold=GPU_SPEEDUP, make_inputs=make_inputs, check=check, warmup=1, rounds=2,
                     what=f"continuous vs static batching, {GPU_SHAPE} bf16, {GPU_REQUESTS} heavy-tailed requests, "
                          f"{MAX_RUNNING} running (tokens/s)",
                     benchmark=benchmark, record=record_property)
    result.assert_passes()
