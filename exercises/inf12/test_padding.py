"""inf12 tests: left padding (ids, mask, positions) and the padding waste of a static batch."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick, raises, random_config, random_lab_model

impl = Topic("inf12")


def random_prompts(rng, vocab_size: int, batch: int, lo: int = 1, hi: int = 29) -> list[list[int]]:
    """`batch` prompts of different odd lengths in [lo, hi] (as far as the range allows)."""
    lengths = (torch.randperm((hi - lo) // 2 + 1, generator=rng)[:batch] * 2 + (lo | 1)).tolist()
    while len(lengths) < batch:
        lengths.append(pick(rng, lo, hi) | 1)
    return [torch.randint(vocab_size, (n,), generator=rng).tolist() for n in lengths]


def test_left_pad_aligns_every_prompt_on_the_right(rng):
    prompts = random_prompts(rng, 500, pick(rng, 2, 6))
    pad_id = pick(rng, 0, 499)
    input_ids, attention_mask, positions = call_keeping_inputs(impl.padding.left_pad, prompts, pad_id)
    width = max(len(p) for p in prompts)
    for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask), ("positions", positions)):
        assert isinstance(t, torch.Tensor) and t.shape == (len(prompts), width), \
            f"{name} must be a [batch, longest prompt] = [{len(prompts)}, {width}] tensor, got " \
            f"{getattr(t, 'shape', type(t).__name__)}"
    for row, prompt in enumerate(prompts):
        num_pads = width - len(prompt)
        want_ids = [pad_id] * num_pads + prompt
        assert input_ids[row].tolist() == want_ids, \
            f"row {row} ({len(prompt)} tokens, width {width}): expected {num_pads} pads ({pad_id}) then the " \
            f"prompt, got {input_ids[row].tolist()}"
        want_mask = [0] * num_pads + [1] * len(prompt)
        assert attention_mask[row].long().tolist() == want_mask, \
            f"row {row}: the mask must be 0 on the {num_pads} pads and 1 on the prompt, " \
            f"got {attention_mask[row].tolist()}"
        got_positions = positions[row, num_pads:].tolist()
        assert got_positions == list(range(len(prompt))), \
            f"row {row}: the prompt's positions must start at 0 as if it were alone (0..{len(prompt) - 1}), " \
            f"got {got_positions}: padding must not be counted"
    assert input_ids.dtype == torch.long and positions.dtype == torch.long, \
        f"input_ids and positions must be int64, got {input_ids.dtype} and {positions.dtype}"


def test_left_padded_forward_matches_each_prompt_alone(rng):
    """float64 model: with your ids, mask and positions, the batch's logits equal each prompt's alone."""
    config = random_config(rng)
    model = random_lab_model(config, rng, torch.float64)
    prompts = random_prompts(rng, config.vocab_size, pick(rng, 3, 5), lo=3, hi=25)
    input_ids, attention_mask, positions = call_keeping_inputs(impl.padding.left_pad, prompts,
                                                               pick(rng, 0, config.vocab_size - 1))
    with torch.no_grad():
        batched = model(input_ids, positions=positions, attention_mask=attention_mask)
        width = input_ids.shape[1]
        for row, prompt in enumerate(prompts):
            alone = model(torch.tensor([prompt]))[0]
            got = batched[row, width - len(prompt):]
            err = (got - alone).abs().max().item()
            assert err < 1e-8, \
                f"prompt {row} ({len(prompt)} of {width} tokens): logits differ from the prompt alone by {err:.2e}; " \
                "is the padding on the left and hidden by the mask?"


@pytest.mark.parametrize("case", ["random", "equal lengths"])
def test_padding_waste_counts_the_empty_slots_of_the_grid(rng, case):
    batch = pick(rng, 2, 9)
    prompt_lens = [pick(rng, 1, 40) for _ in range(batch)]
    output_lens = [pick(rng, 0, 30) for _ in range(batch)]
    output_lens[1] = output_lens[0] + pick(rng, 1, 9)                  # some rows finish early
    if case == "equal lengths":
        prompt_lens, output_lens = [prompt_lens[0]] * batch, [output_lens[0]] * batch
    width = max(prompt_lens) + max(output_lens)
    grid = torch.zeros(batch, width, dtype=torch.bool)                 # True = a real token's slot
    for row, (p, o) in enumerate(zip(prompt_lens, output_lens)):
        start = max(prompt_lens) - p                                    # left padding
        grid[row, start:start + p + o] = True
    want = int((~grid).sum()) / grid.numel()
    got = impl.padding.padding_waste(prompt_lens, output_lens)
    assert abs(got - want) < 1e-9, \
        f"prompts {prompt_lens}, outputs {output_lens}: the grid [{batch}, {width}] has {int((~grid).sum())} " \
        f"empty slots of {grid.numel()}, waste {want:.4f}; got {got}"
    for bad in (([], []), ([3, 4], [1]), ([0, 2], [1, 1]), ([2], [-1])):
        with raises(ValueError,
                    because=f"padding_waste{bad}: empty, unequal lengths, an empty prompt or a negative output"):
            impl.padding.padding_waste(*bad)


def test_left_pad_rejects_empty_input():
    for bad in ([], [[1, 2], []]):
        with raises(ValueError, because=f"left_pad({bad}, 0): an empty batch or an empty prompt cannot be padded"):
            impl.padding.left_pad(bad, 0)
