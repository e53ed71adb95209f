"""inf30 scheduler tests: invariants on random timed workloads, with a fake model whose next token is a hash
of everything a request has been fed (so a request computed wrongly, or resumed wrongly, gives other tokens).

The tests drive the scheduler with their own loop, so they judge `Scheduler` alone.
"""
import zlib

import pytest
import torch

from lab.impl import Topic
from lab.kv_slots import SlotCounter
from lab.testing import pick

impl = Topic("inf30")

VOCAB, EOS = 61, 0


def hash_next(tokens) -> int:
    """The fake model: the next token is a hash of the whole sequence fed so far (1 in VOCAB is the EOS)."""
    return zlib.crc32(bytes(str(tuple(tokens)), "ascii")) % VOCAB


def hash_alone(request, eos=EOS) -> list[int]:
    """The oracle: the request generated alone by the fake model."""
    tokens, out = list(request.prompt_ids), []
    while len(out) < request.max_new_tokens:
        out.append(hash_next(tokens))
        tokens.append(out[-1])
        if out[-1] == eos:
            break
    return out


class FakeRunner:
    """Plays the model: checks that each chunk continues exactly what the request was fed before (its KV),
    and samples hash_next of everything fed. Preempted requests lose what they were fed."""

    def __init__(self, requests):
        self.prompts = {r.request_id: list(r.prompt_ids) for r in requests}
        self.fed: dict[int, list[int]] = {}
        self.outputs: dict[int, list[int]] = {r.request_id: [] for r in requests}

    def step(self, plan) -> dict[int, int]:
        for request_id in plan.preempted_ids:
            self.fed.pop(request_id, None)
        sampled = {}
        for chunk in plan.chunks:
            fed = self.fed.setdefault(chunk.request_id, [])
            known = self.prompts[chunk.request_id] + self.outputs[chunk.request_id]
            assert chunk.start_position == len(fed), (
                f"request {chunk.request_id}: the chunk starts at position {chunk.start_position} but its KV cache "
                f"holds {len(fed)} tokens (a preempted request restarts at 0, a running one continues)")
            want = known[len(fed):len(fed) + len(chunk.token_ids)]
            assert list(chunk.token_ids) == want, (
                f"request {chunk.request_id}: expected to feed its known tokens {want} (prompt + generated, from "
                f"position {len(fed)}), got {list(chunk.token_ids)}")
            fed.extend(chunk.token_ids)
            assert chunk.is_sampling == (len(fed) == len(known)), (
                f"request {chunk.request_id}: is_sampling must be True exactly when the chunk reaches its last "
                f"known token ({len(fed)} of {len(known)} fed), got {chunk.is_sampling}")
            if chunk.is_sampling:
                sampled[chunk.request_id] = hash_next(fed)
        return sampled

    def record(self, sampled, finished_now):
        for request_id, token in sampled.items():
            self.outputs[request_id].append(token)


def random_requests(rng, num, max_prompt, max_new, max_arrival):
    return [impl.scheduler.Request(i, torch.randint(VOCAB, (pick(rng, 1, max_prompt),), generator=rng).tolist(),
                                   pick(rng, 1, max_new), arrival_step=pick(rng, 0, max_arrival))
            for i in range(num)]


def drive(requests, config, allocator, eos=EOS, max_steps=5000):
    """The test's own serving loop around the student's Scheduler, checking the invariants at every step.
    Returns (scheduler, number of non-empty steps)."""
    scheduler = impl.scheduler.Scheduler(config, allocator, eos_token_id=eos)
    runner = FakeRunner(requests)
    pending = sorted(requests, key=lambda r: r.arrival_step)
    arrival_order = [r.request_id for r in pending]
    admitted, finished_ever, step, num_steps = [], set(), 0, 0
    while pending or scheduler.has_unfinished():
        assert step < max_steps, f"no progress after {max_steps} steps: is some request never scheduled?"
        while pending and pending[0].arrival_step <= step:
            scheduler.add_request(pending.pop(0))
        if not scheduler.has_unfinished():
            step = pending[0].arrival_step
            continue
        plan = scheduler.schedule()
        ids = [c.request_id for c in plan.chunks]
        assert plan.num_tokens <= config.max_num_batched_tokens, (
            f"step {step}: the plan has {plan.num_tokens} tokens ({[len(c.token_ids) for c in plan.chunks]} per "
            f"request) over the budget max_num_batched_tokens={config.max_num_batched_tokens}")
        assert len(ids) == len(set(ids)) and all(c.token_ids for c in plan.chunks), \
            f"step {step}: each request at most once and with at least one token, got {ids}"
        assert not finished_ever & set(ids), (f"step {step}: finished requests {finished_ever & set(ids)} were "
                                              "scheduled again")
        assert len(scheduler.running) <= config.max_num_seqs, \
            f"step {step}: {len(scheduler.running)} requests running, over max_num_seqs={config.max_num_seqs}"
        for c in plan.chunks:
            held = allocator.num_held(c.request_id)
            assert held >= c.start_position + len(c.token_ids), (
                f"step {step}: request {c.request_id} writes K/V up to position "
                f"{c.start_position + len(c.token_ids)} but holds only {held} slots: allocate before scheduling")
            if c.request_id not in admitted:
                admitted.append(c.request_id)
        assert admitted == arrival_order[:len(admitted)], (
            f"step {step}: requests must be admitted first come, first served (arrival order "
            f"{arrival_order[:len(admitted)]}), got {admitted}")
        left = config.max_num_batched_tokens - plan.num_tokens
        if scheduler.waiting and not plan.preempted_ids and left > 0 and len(scheduler.running) < config.max_num_seqs:
            head = scheduler.waiting[0]
            need = min(len(head.request.prompt_ids) + len(head.output_ids), left)
            assert allocator.num_free_slots < need, (
                f"step {step}: request {head.request_id} waits although budget ({left} tokens), a running slot "
                f"({len(scheduler.running)} of {config.max_num_seqs}) and memory ({allocator.num_free_slots} free "
                f"slots, it needs {need}) are there: admit waiting requests as soon as there is room")
        sampled = runner.step(plan)
        finished = scheduler.update(plan, sampled)
        runner.record(sampled, finished)
        running_ids = {s.request_id for s in scheduler.running}
        for request_id in finished:
            assert request_id not in running_ids and allocator.num_held(request_id) == 0, (
                f"step {step}: request {request_id} finished but still runs or holds memory: retire it at once")
        expected_done = {rid for rid, out in runner.outputs.items() if rid in sampled and (
            out[-1] == eos or len(out) == next(r.max_new_tokens for r in requests if r.request_id == rid))}
        assert set(finished) == expected_done, (
            f"step {step}: expected {sorted(expected_done)} to finish (EOS or max_new_tokens reached) at this step, "
            f"update returned {sorted(finished)}")
        finished_ever |= set(finished)
        step += 1
        num_steps += 1
    assert allocator.num_free_slots == allocator.num_total_slots, \
        f"all requests done but {allocator.num_total_slots - allocator.num_free_slots} KV slots are still held"
    return scheduler, num_steps


def assert_outputs_alone(scheduler, requests, eos=EOS):
    for r in requests:
        want = hash_alone(r, eos)
        got = scheduler.finished.get(r.request_id)
        assert got == want, (f"request {r.request_id} ({len(r.prompt_ids)}-token prompt, max_new_tokens="
                             f"{r.max_new_tokens}): alone it generates {want}, got {got}")


def test_scheduler_keeps_its_invariants_on_random_workloads(rng):
    """Ample memory; prompts longer than the budget (chunked prefill), staggered arrivals, EOS endings."""
    for _ in range(6):
        budget = pick(rng, 5, 40)
        config = impl.scheduler.SchedulerConfig(max_num_batched_tokens=budget, max_num_seqs=pick(rng, 1, 7))
        requests = random_requests(rng, pick(rng, 5, 23), 2 * budget, 30, pick(rng, 0, 40))
        allocator = SlotCounter(sum(len(r.prompt_ids) + r.max_new_tokens for r in requests))
        scheduler, _ = drive(requests, config, allocator)
        assert scheduler.num_preemptions == 0, \
            f"memory for every request at once, yet {scheduler.num_preemptions} preemptions"
        assert_outputs_alone(scheduler, requests)


def test_preempted_requests_resume_with_identical_output(rng):
    """Memory for about two requests: preemption by recompute must happen and must not change any output."""
    total_preemptions = 0
    for _ in range(6):
        config = impl.scheduler.SchedulerConfig(max_num_batched_tokens=pick(rng, 8, 30), max_num_seqs=pick(rng, 3, 6))
        requests = random_requests(rng, pick(rng, 6, 15), 20, 40, pick(rng, 0, 10))
        biggest = max(len(r.prompt_ids) + r.max_new_tokens for r in requests)
        allocator = SlotCounter(biggest + pick(rng, 0, biggest))
        scheduler, _ = drive(requests, config, allocator)
        total_preemptions += scheduler.num_preemptions
        assert_outputs_alone(scheduler, requests)
    assert total_preemptions > 0, "memory for about two requests at a time, yet no request was ever preempted " \
                                  "(count preemptions in scheduler.num_preemptions)"


def test_a_step_mixes_prefills_with_decodes_and_fills_freed_slots(rng):
    """Two running requests decode while a third arrives: the next step carries its prompt beside their decodes;
    when one finishes, a waiting request takes its place in the very next step."""
    Request, Config = impl.scheduler.Request, impl.scheduler.SchedulerConfig
    short, long_ = pick(rng, 5, 8), pick(rng, 9, 15)
    requests = [Request(0, [1, 2, 3], short), Request(1, [4, 5], long_), Request(2, [6, 7, 8, 9], 3),
                Request(3, [10, 11, 12], 2, arrival_step=1)]
    scheduler = impl.scheduler.Scheduler(Config(max_num_batched_tokens=64, max_num_seqs=3), SlotCounter(1000))
    for r in requests[:3]:
        scheduler.add_request(r)
    plan = scheduler.schedule()
    assert [(c.request_id, len(c.token_ids)) for c in plan.chunks] == [(0, 3), (1, 2), (2, 4)], \
        f"step 0 should prefill the three requests whole, in order, got {plan.chunks}"
    scheduler.update(plan, {0: 21, 1: 22, 2: 23})
    scheduler.add_request(requests[3])
    plan = scheduler.schedule()
    assert [(c.request_id, len(c.token_ids)) for c in plan.chunks] == [(0, 1), (1, 1), (2, 1)], \
        f"step 1: three decodes, and request 3 must wait (max_num_seqs=3), got {plan.chunks}"
    for step in range(2, 20):
        sampled = {c.request_id: 30 + step for c in plan.chunks if c.is_sampling}
        finished = scheduler.update(plan, sampled)
        plan = scheduler.schedule()
        ids = [c.request_id for c in plan.chunks]
        if 2 in finished:                                       # request 2 ends after its 3rd token
            assert 3 in ids and next(len(c.token_ids) for c in plan.chunks if c.request_id == 3) == 3, (
                f"request 2 finished: request 3 must be prefilled in the very next step, beside the decodes "
                f"{[i for i in ids if i != 3]}; got {plan.chunks}")
            return
    pytest.fail("request 2 (max_new_tokens=3) never finished")


def test_bad_input_is_rejected(rng):
    Request, Config = impl.scheduler.Request, impl.scheduler.SchedulerConfig
    for bad in (lambda: Request(0, [], 3), lambda: Request(0, [1], 0), lambda: Request(0, [1], 2, arrival_step=-1),
                lambda: Config(max_num_batched_tokens=0), lambda: Config(max_num_seqs=0)):
        with pytest.raises(ValueError):
            bad()
    scheduler = impl.scheduler.Scheduler(Config(), SlotCounter(10))
    scheduler.add_request(Request(0, [1, 2], 3))
    with pytest.raises(ValueError):
        scheduler.add_request(Request(0, [1, 2], 3))           # the same id twice
    with pytest.raises(ValueError):
        scheduler.add_request(Request(1, [1] * 8, 3))          # 11 slots can never fit in 10
    plan = scheduler.schedule()
    with pytest.raises(ValueError):
        scheduler.update(plan, {})                              # the sampling chunk's token is missing
