"""inf30 hidden tests: a one-token budget and a single running slot, memory for exactly the biggest request,
max_new_tokens=1 and an EOS as the first token, and a packed step of many one-token prompts."""
import torch

from exercises.inf30.test_generate import assert_same_as_alone, one_thread  # noqa: F401 (autouse fixture)
from exercises.inf30.test_runner import CountingModel
from lab.testing import greedy_alone
from exercises.inf30.test_scheduler import assert_outputs_alone, drive, hash_alone, random_requests
from lab.impl import Topic
from lab.kv_slots import SlotCounter
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf30")


def test_hidden_one_token_budget_and_one_running_slot(rng):
    """Every prompt prefilled one token per step, one request at a time: still every invariant, same outputs."""
    config = impl.scheduler.SchedulerConfig(max_num_batched_tokens=1, max_num_seqs=1)
    requests = random_requests(rng, pick(rng, 3, 7), 9, 6, 5)
    scheduler, num_steps = drive(requests, config, SlotCounter(1000))
    assert_outputs_alone(scheduler, requests)
    want = sum(len(r.prompt_ids) + len(hash_alone(r)) - 1 for r in requests)
    assert num_steps == want, f"one token per step: expected {want} steps (prompt + outputs - 1 each), got {num_steps}"


def test_hidden_memory_for_exactly_the_biggest_request(rng):
    """Only the biggest request fits at its end: many preemptions, every output unchanged, nothing leaked."""
    for _ in range(3):
        config = impl.scheduler.SchedulerConfig(max_num_batched_tokens=pick(rng, 4, 30), max_num_seqs=pick(rng, 2, 8))
        requests = random_requests(rng, pick(rng, 4, 12), 15, 25, 3)
        allocator = SlotCounter(max(len(r.prompt_ids) + r.max_new_tokens for r in requests))
        scheduler, _ = drive(requests, config, allocator)
        assert_outputs_alone(scheduler, requests)


def test_hidden_one_new_token_and_eos_first(rng):
    """max_new_tokens=1 everywhere, and requests whose first token is the EOS: each finishes after its prefill."""
    requests = random_requests(rng, 12, 11, 1, 4)
    firsts = [hash_alone(r)[0] for r in requests]
    eos = firsts[pick(rng, 0, len(firsts) - 1)]
    longer = [impl.scheduler.Request(100 + r.request_id, r.prompt_ids, 5, r.arrival_step) for r in requests[:4]]
    scheduler, num_steps = drive(requests + longer, impl.scheduler.SchedulerConfig(64, 16), SlotCounter(1000), eos=eos)
    assert_outputs_alone(scheduler, requests + longer, eos=eos)


def test_hidden_many_one_token_prompts_in_one_packed_step(rng):
    """15 one-token prompts arriving together on a float64 model: one prefill forward carries all of them."""
    config = random_config(rng)
    model = CountingModel(random_lab_model(config, rng, torch.float64))
    requests = [impl.scheduler.Request(i, [pick(rng, 0, config.vocab_size - 1)], pick(rng, 1, 4)) for i in range(15)]
    result = impl.generate.continuous_generate(model, requests, impl.scheduler.SchedulerConfig(64, 16))
    assert model.shapes[0] == (1, 15), f"the first forward should pack the 15 prompts as [1, 15], got {model.shapes[0]}"
    assert len(model.shapes) == max(r.max_new_tokens for r in requests), \
        f"expected {max(r.max_new_tokens for r in requests)} forwards (the longest request), got {len(model.shapes)}"
    alone = {r.request_id: greedy_alone(model.model, r.prompt_ids, r.max_new_tokens) for r in requests}
    assert_same_as_alone(result, requests, alone)
