"""inf12 · Static batching: left padding, and what padding costs.

A static batch runs prompts of different lengths as one [batch, width] tensor. Padding goes on the
*left*, so that every prompt's last token sits in the last column: the column whose logits predict the
next token, and after which every row appends its new tokens in lockstep. The attention mask hides the
padding from every real token, and positions count each prompt's own tokens from 0, as if it were alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from lab.errors import NotStarted


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths into one batch, padded on the left.

    prompts: `batch` non-empty sequences of token ids; width = the longest prompt's length.
    Returns three CPU tensors, each [batch, width] int64:
      input_ids       `pad_id` in the first width - len(prompt) columns of a row, then the prompt;
      attention_mask  1 on the prompt's tokens, 0 on padding (Hugging Face's convention);
      positions       0, 1, ..., len(prompt) - 1 on the prompt's tokens: each prompt starts at
                      position 0 as if it were alone; 0 on padding (masked, never used).
    Raises ValueError for an empty batch or an empty prompt. Hints: README.md, "Hints".
    """
    raise NotStarted("inf12: implement left_pad")


def padding_waste(prompt_lens: Sequence[int], output_lens: Sequence[int]) -> float:
    """The fraction of a static batch's token slots that hold no real token.

    A static batch is a grid of [batch, max(prompt_lens) + max(output_lens)] token slots: every row is
    left-padded to the longest prompt, and keeps running until the longest output is done. Row i uses
    prompt_lens[i] + output_lens[i] of its slots; the rest is padding, computed and cached for nothing.
    Returns wasted slots / all slots, in [0, 1). Example: prompts of 2 and 4 tokens, outputs of 3 and 1:
    grid 2 x (4 + 3) = 14 slots, used 5 + 5 = 10, waste 4/14 = 0.286.
    Raises ValueError if the lists differ in length or are empty, a prompt length is < 1 or an output
    length < 0.
    """
    raise NotStarted("inf12: implement padding_waste")
