"""inf12 hidden tests: wider batches with one-token and equal-length prompts, an EOS as some row's first token,
max_new_tokens=1, rows that generate nothing."""
import math

import pytest
import torch

from lab.impl import Topic
from lab.testing import ConcatCache, Spy, pick, random_config, random_lab_model

impl = Topic("inf12")


def mixed_prompts(rng, vocab_size, batch):
    """A one-token prompt, two of the same length, the rest random lengths up to 27."""
    lengths = [1, 9, 9] + [pick(rng, 2, 27) for _ in range(batch - 3)]
    lengths = [lengths[i] for i in torch.randperm(batch, generator=rng)]
    return [torch.randint(vocab_size, (n,), generator=rng).tolist() for n in lengths]


def exact_attention(q, k, v, mask):
    """Attention by the book in the inputs' own dtype (float64 stays float64), the same on every run."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def wide_gqa_model(rng, dtype=torch.float64):
    kv = pick(rng, 1, 2)
    config = random_config(rng, num_kv_heads=kv, num_heads=4 * kv)
    model = random_lab_model(config, rng, dtype)
    model.attention = exact_attention
    return config, model


@torch.inference_mode()
def greedy_alone(model, prompt, max_new_tokens, eos_token_id=None):
    cache, ids, tokens = ConcatCache(model.config.num_layers), torch.tensor([list(prompt)]), []
    for _ in range(max_new_tokens):
        ids = model(ids, cache=cache, last_only=True)[0, -1].argmax().view(1, 1)
        tokens.append(int(ids))
        if tokens[-1] == eos_token_id:
            break
    return tokens


def test_hidden_left_padded_forward_of_a_wide_mixed_batch(rng):
    """7 prompts (one of one token, two of equal length), wide GQA, float64: each row's logits and positions."""
    config, model = wide_gqa_model(rng)
    prompts = mixed_prompts(rng, config.vocab_size, 7)
    pad_id = pick(rng, 0, config.vocab_size - 1)
    input_ids, attention_mask, positions = impl.padding.left_pad(prompts, pad_id)
    width = max(len(p) for p in prompts)
    assert input_ids.shape == attention_mask.shape == positions.shape == (7, width)
    with torch.no_grad():
        batched = model(input_ids, positions=positions, attention_mask=attention_mask)
        for row, prompt in enumerate(prompts):
            pads = width - len(prompt)
            assert input_ids[row].tolist() == [pad_id] * pads + prompt, f"row {row}: pads first, then the prompt"
            assert positions[row, pads:].tolist() == list(range(len(prompt))), \
                f"row {row}: the prompt's positions must be 0..{len(prompt) - 1}, got {positions[row, pads:].tolist()}"
            alone = model(torch.tensor([prompt]))[0]
            err = (batched[row, pads:] - alone).abs().max().item()
            assert err < 1e-8, f"row {row} ({len(prompt)} of {width} tokens): logits differ from alone by {err:.2e}"


def test_hidden_eos_as_a_rows_first_token_and_one_new_token(rng):
    """float64: the EOS is the very first token of one row while the others go on; then max_new_tokens=1."""
    config, model = wide_gqa_model(rng)
    prompts = mixed_prompts(rng, config.vocab_size, pick(rng, 4, 6))
    max_new = 9
    plain = [greedy_alone(model, p, max_new) for p in prompts]
    row = next((r for r in range(len(prompts)) if any(plain[r][0] not in o[:max_new - 1] for o in plain)), 0)
    eos = plain[row][0]
    want = [greedy_alone(model, p, max_new, eos) for p in prompts]
    pad_id = pick(rng, 0, config.vocab_size - 1)
    got = impl.batch_generate.batched_greedy_generate(model, prompts, max_new, eos_token_id=eos, pad_id=pad_id)
    assert got == want, f"eos {eos} (row {row}'s first token): each row alone gives {want}, the batch gave {got}"
    one = impl.batch_generate.batched_greedy_generate(model, prompts, 1, pad_id=pad_id)
    assert one == [p[:1] for p in plain], f"max_new_tokens=1: expected {[p[:1] for p in plain]}, got {one}"


@pytest.mark.parametrize("case", ["batch-of-one", "nothing-generated", "complementary"])
def test_hidden_padding_waste_edge_grids(rng, case):
    """One row (no waste), rows that generate nothing, and rows whose prompt and output lengths complement."""
    if case == "batch-of-one":
        prompt_lens, output_lens = [pick(rng, 1, 50)], [pick(rng, 0, 50)]
    elif case == "nothing-generated":
        prompt_lens = [pick(rng, 1, 40) for _ in range(pick(rng, 2, 7))]
        output_lens = [0] * len(prompt_lens)
    else:
        total = pick(rng, 20, 60)
        prompt_lens = [pick(rng, 1, total - 1) for _ in range(pick(rng, 2, 7))]
        output_lens = [total - p for p in prompt_lens]
    batch, width = len(prompt_lens), max(prompt_lens) + max(output_lens)
    real = sum(prompt_lens) + sum(output_lens)
    want = 1 - real / (batch * width)
    got = impl.padding.padding_waste(prompt_lens, output_lens)
    assert abs(got - want) < 1e-9, f"prompts {prompt_lens}, outputs {output_lens}: waste {want:.6f}, got {got}"


def test_hidden_positions_of_a_batch_with_a_one_token_prompt(rng):
    """A wide batch with a one-token prompt: one prefill, then [batch, 1] steps, each row at its own position."""
    config, model = wide_gqa_model(rng, torch.float32)
    spy = Spy(model)
    prompts = mixed_prompts(rng, config.vocab_size, pick(rng, 5, 8))
    max_new = pick(rng, 3, 6)
    impl.batch_generate.batched_greedy_generate(spy, prompts, max_new)
    batch, width = len(prompts), max(len(p) for p in prompts)
    shapes = [shape for shape, _ in spy.calls]
    assert shapes[0] == (batch, width) and max_new <= len(shapes) <= max_new + 1 \
        and all(s == (batch, 1) for s in shapes[1:max_new]), (f"expected a [{batch}, {width}] prefill then [{batch}, "
                                                              f"1] steps, got {shapes}")
    for row, prompt in enumerate(prompts):
        assert spy.calls[0][1][row, width - len(prompt):].tolist() == list(range(len(prompt))), f"prefill, row {row}"
        for step, (_, positions) in enumerate(spy.calls[1:max_new], start=1):
            assert positions[row].tolist() == [len(prompt) + step - 1], \
                (f"step {step}, row {row} ({len(prompt)} tokens): expected position {len(prompt) + step - 1}, got "
                 f"{positions[row].tolist()}")
