from solutions.inf12.padding import *  # noqa: F401,F403

import torch

from solutions.inf12.padding import left_pad as _left_pad


def left_pad(prompts, pad_id):
    input_ids, attention_mask, _ = _left_pad(prompts, pad_id)
    positions = torch.arange(input_ids.shape[1]).expand_as(input_ids).clone()   # wrong: pads counted
    return input_ids, attention_mask, positions
