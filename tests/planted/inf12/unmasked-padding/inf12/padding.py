from solutions.inf12.padding import *  # noqa: F401,F403

import torch

from solutions.inf12.padding import left_pad as _left_pad


def left_pad(prompts, pad_id):
    input_ids, _, positions = _left_pad(prompts, pad_id)
    return input_ids, torch.ones_like(input_ids), positions                     # wrong: pads visible
