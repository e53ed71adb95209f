"""inf13 hidden tests: the decode step on wide GQA batches up to the cache's last slot, greedy_decode at other
lengths, the step traced whole by dynamo (backend "eager": no Inductor), CompileWatch blocks inside blocks."""
import pytest
import torch
from torch._dynamo.utils import counters

from lab.cache import StaticCache
from lab.impl import Topic
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf13")


def dynamo_totals() -> tuple[int, int]:
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def wide_gqa_model(rng, dtype=torch.float64):
    kv = pick(rng, 1, 2)
    config = random_config(rng, num_kv_heads=kv, num_heads=4 * kv, num_layers=2)
    return config, random_lab_model(config, rng, dtype)


def prefilled_cache(model, prompt, max_len):
    weight = next(model.parameters())
    cache = StaticCache(model.config, prompt.shape[0], max_len, weight.dtype, weight.device)
    with torch.no_grad():
        logits = model(prompt, cache=cache, cache_position=torch.arange(prompt.shape[1]))
    return cache, logits[:, -1].argmax(-1, keepdim=True)


@pytest.mark.parametrize("prompt_len", [1, 29])
def test_hidden_decode_step_fills_the_cache_to_its_last_slot(rng, prompt_len):
    """float64, 4 query heads per KV head, batch 4, max_len exactly prompt + steps: every step's logits."""
    config, model = wide_gqa_model(rng)
    batch, steps = 4, pick(rng, 5, 9)
    seq = torch.randint(config.vocab_size, (batch, prompt_len + steps), generator=rng)
    cache, _ = prefilled_cache(model, seq[:, :prompt_len], prompt_len + steps)
    step = impl.decode_step.make_decode_step(model, cache)
    for i in range(steps):
        pos = prompt_len + i
        got = step(seq[:, pos:pos + 1], torch.tensor([pos]))
        with torch.no_grad():
            want = model(seq[:, :pos + 1])[:, -1]
        assert got.shape == want.shape, f"expected logits {list(want.shape)}, got {list(got.shape)}"
        err = (got - want).abs().max().item()
        assert err < 1e-9, f"step {i} (slot {pos} of {prompt_len + steps}, batch {batch}): logits differ by {err:.2e}"


def test_hidden_greedy_decode_one_step_and_many(rng):
    """float64, batch 4: one step, then 17 steps from a one-token prompt, against the no-cache argmax."""
    config, model = wide_gqa_model(rng)
    for prompt_len, steps in ((pick(rng, 5, 25), 1), (1, 17)):
        prompt = torch.randint(config.vocab_size, (4, prompt_len), generator=rng)
        cache, first = prefilled_cache(model, prompt, prompt_len + steps + 1)
        calls = []

        def step(token_ids, cache_position):
            calls.append((tuple(token_ids.shape), cache_position.tolist()))
            with torch.no_grad():
                return model(token_ids, cache=cache, cache_position=cache_position, last_only=True)[:, -1]

        got = impl.decode_step.greedy_decode(step, first, prompt_len, steps)
        seq = torch.cat([prompt, first], dim=1)
        with torch.no_grad():
            for _ in range(steps):
                seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        want = seq[:, prompt_len + 1:]
        assert got.shape == want.shape and torch.equal(got, want), f"expected {want.tolist()}, got {got.tolist()}"
        assert calls == [((4, 1), [prompt_len + i]) for i in range(steps)], \
            (f"{steps} steps from slot {prompt_len}: expected one [4, 1] call per step at slots {prompt_len}.., got "
             f"{calls}")


def test_hidden_step_traces_as_one_graph_without_recompiles(rng):
    """Your eager step, traced by dynamo (backend "eager", fullgraph, static shapes): one graph, then 12 more
    steps at new slots compile nothing (no Python int position, no .item(), no growing K/V)."""
    config, model = wide_gqa_model(rng, torch.float32)
    batch, prompt_len, steps = 2, pick(rng, 3, 15), 12
    prompt = torch.randint(config.vocab_size, (batch, prompt_len), generator=rng)
    cache, first = prefilled_cache(model, prompt, prompt_len + steps + 2)
    eager_cache, _ = prefilled_cache(model, prompt, prompt_len + steps + 2)
    eager = impl.decode_step.make_decode_step(model, eager_cache)
    traced = torch.compile(impl.decode_step.make_decode_step(model, cache), backend="eager", fullgraph=True,
                           dynamic=False)
    graphs0, breaks0 = dynamo_totals()
    token = first
    for i in range(steps):
        pos = torch.tensor([prompt_len + i])
        try:
            got = traced(token, pos)
        except torch._dynamo.exc.TorchDynamoException as error:
            pytest.fail(f"dynamo could not trace the step whole: {str(error).strip().splitlines()[0]}")
        want = eager(token, pos)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m: f"step {i}: {m}")
        graphs, breaks = dynamo_totals()
        assert (graphs - graphs0, breaks - breaks0) == (1, 0), (
            f"after step {i} (slot {prompt_len + i}) dynamo has compiled {graphs - graphs0} graphs and met "
            f"{breaks - breaks0} breaks for the step; expected 1 and 0")
        token = got.argmax(-1, keepdim=True)


def double(x):
    return x * 2


def breaks_on_item(x):
    return x + x.sum().item()


def test_hidden_compile_watch_blocks_inside_blocks():
    """An outer watch sees what an inner one saw plus its own; an item() break's reason is kept."""
    x = torch.randn(11)
    torch.compile(double, backend="eager", dynamic=False)(x)              # before any block
    graphs0, breaks0 = dynamo_totals()
    with impl.compile_watch.CompileWatch() as outer:
        torch.compile(double, backend="eager", dynamic=False)(torch.randn(3, 5))     # a new shape: a graph
        inner_start = dynamo_totals()
        with impl.compile_watch.CompileWatch() as inner:
            torch.compile(breaks_on_item, backend="eager")(x)
        inner_end = dynamo_totals()
    graphs, breaks = dynamo_totals()
    inner_counts = (inner_end[0] - inner_start[0], inner_end[1] - inner_start[1])
    assert (inner.num_graphs, inner.num_graph_breaks) == inner_counts, \
        (f"inner block: dynamo compiled {inner_end[0] - inner_start[0]} graphs, {inner_end[1] - inner_start[1]} "
         f"breaks; got {inner}")
    assert (outer.num_graphs, outer.num_graph_breaks) == (graphs - graphs0, breaks - breaks0), \
        f"outer block: dynamo compiled {graphs - graphs0} graphs, {breaks - breaks0} breaks; got {outer}"
    assert len(inner.graph_break_reasons) == inner.num_graph_breaks >= 1 and "item" in str(inner.graph_break_reasons), \
        f"expected the item() break's reason, got {inner.graph_break_reasons}"
