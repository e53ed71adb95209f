from solutions.inf12.padding import *  # noqa: F401,F403

import torch


def left_pad(prompts, pad_id):
    if len(prompts) == 0 or min(len(p) for p in prompts) == 0:
        raise ValueError("empty batch or prompt")
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, :len(prompt)] = torch.tensor(list(prompt))      # wrong: padding after the prompt
        attention_mask[row, :len(prompt)] = 1
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention_mask, positions
