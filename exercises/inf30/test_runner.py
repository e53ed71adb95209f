"""inf30 runner tests: the packed layout against a loop oracle, and packed steps against each request alone."""
import pytest
import torch
from torch import nn

from lab.figures import one_cpu_thread
from lab.impl import Topic
from lab.testing import greedy_alone, pick, random_config, random_lab_model

impl = Topic("inf30")


@pytest.fixture(autouse=True)
def one_thread():
    """Small forwards run many tiny parallel regions: one thread is faster on a busy 2-core CPU."""
    with one_cpu_thread():
        yield


def random_chunks(rng, num):
    chunks = []
    for request_id in torch.randperm(3 * num, generator=rng)[:num].tolist():
        n = pick(rng, 1, 9) if pick(rng, 0, 2) else 1                     # a third are decodes
        chunks.append(impl.scheduler.ScheduledChunk(request_id, tuple(torch.randint(500, (n,), generator=rng).tolist()),
                                                    pick(rng, 0, 13), bool(pick(rng, 0, 1))))
    return chunks


def loop_layout(chunks):
    """The oracle: every query and key by hand. Keys are laid out chunk by chunk, positions 0..start+len-1."""
    keys = [(number, pos) for number, c in enumerate(chunks) for pos in range(c.start_position + len(c.token_ids))]
    queries = [(number, c.start_position + j) for number, c in enumerate(chunks) for j in range(len(c.token_ids))]
    mask = torch.tensor([[kn == qn and kp <= qp for kn, kp in keys] for qn, qp in queries])
    ends = torch.tensor([len(c.token_ids) for c in chunks]).cumsum(0) - 1
    sample_index = [int(e) for e, c in zip(ends, chunks) if c.is_sampling]
    return [t for c in chunks for t in c.token_ids], [qp for _, qp in queries], mask, sample_index


def test_pack_chunks_builds_positions_and_a_block_diagonal_causal_mask(rng):
    for _ in range(20):
        chunks = random_chunks(rng, pick(rng, 1, 6))
        ids, positions, mask, sample_index = loop_layout(chunks)
        got = impl.runner.pack_chunks(chunks)
        n, s = mask.shape
        assert got.input_ids.tolist() == [ids], (f"input_ids: expected [{ids}] (chunks one after another), got "
                                                 f"{got.input_ids.tolist()}")
        assert got.positions.tolist() == [positions], \
            (f"positions: expected [{positions}] (each request's own, from its start_position), got "
             f"{got.positions.tolist()}")
        assert got.mask.dtype == torch.bool and tuple(got.mask.shape) == (1, 1, n, s), \
            f"mask: expected bool [1, 1, {n}, {s}], got {got.mask.dtype} {list(got.mask.shape)}"
        wrong = (got.mask[0, 0] != mask).nonzero().tolist()
        assert not wrong, (f"mask wrong at (query, key) {wrong[:5]}: a token sees its own request's keys up to its own "
                           f"position, and nothing of the other requests (chunks: "
                           f"{[(c.start_position, len(c.token_ids)) for c in chunks]})")
        assert got.sample_index.tolist() == sample_index, \
            (f"sample_index: expected {sample_index} (last token of each sampling chunk), got "
             f"{got.sample_index.tolist()}")
    with pytest.raises(ValueError):
        impl.runner.pack_chunks([])


class CountingModel(nn.Module):
    """Wraps a model, records each forward's input shape (what a step really ran)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.shapes = model, model.config, []

    def forward(self, input_ids, *args, **kwargs):
        self.shapes.append(tuple(input_ids.shape))
        return self.model(input_ids, *args, **kwargs)


def test_packed_steps_match_each_request_alone(rng):
    """float64 random model, hand-made plans: random chunk sizes (prefill cut anywhere, decodes), one request
    preempted halfway and recomputed from position 0. One forward per step, [1, plan tokens], no padding."""
    config = random_config(rng)
    model = CountingModel(random_lab_model(config, rng, torch.float64))
    ScheduledChunk, StepPlan = impl.scheduler.ScheduledChunk, impl.scheduler.StepPlan
    num = pick(rng, 3, 5)
    prompts = [torch.randint(config.vocab_size, (pick(rng, 2, 17),), generator=rng).tolist() for _ in range(num)]
    max_new = 7
    known = [list(p) for p in prompts]
    computed, outputs = [0] * num, [[] for _ in range(num)]
    runner = impl.runner.ModelRunner(model)
    victim, preempt_at = pick(rng, 0, num - 1), pick(rng, 2, 4)
    for step in range(60):
        preempted = ()
        if step == preempt_at:
            computed[victim], preempted = 0, (victim,)
        chunks = []
        for i in torch.randperm(num, generator=rng).tolist():             # any packed order
            if len(outputs[i]) == max_new or (step == preempt_at and i == victim):
                continue
            n = pick(rng, 1, len(known[i]) - computed[i])
            chunks.append(ScheduledChunk(i, tuple(known[i][computed[i]:computed[i] + n]), computed[i],
                                         computed[i] + n == len(known[i])))
            computed[i] += n
        if not chunks and not preempted:
            break
        plan = StepPlan(tuple(chunks), preempted)
        before = len(model.shapes)
        sampled = runner.step(plan)
        if chunks:
            assert model.shapes[before:] == [(1, plan.num_tokens)], (
                f"step {step}: one packed forward of [1, {plan.num_tokens}] tokens expected, got "
                f"{model.shapes[before:]}")
        want = sorted(c.request_id for c in chunks if c.is_sampling)
        assert sorted(sampled) == want, f"step {step}: expected a next token for requests {want}, got {sorted(sampled)}"
        for i, token in sampled.items():
            outputs[i].append(int(token))
            known[i].append(int(token))
    for i, prompt in enumerate(prompts):
        want = greedy_alone(model.model, prompt, max_new)[0]
        assert outputs[i] == want, (f"request {i} ({len(prompt)}-token "
                                    f"prompt{', preempted and recomputed' if i == victim else ''}): "
                                    f"alone it generates {want}, the packed steps gave {outputs[i]}")
