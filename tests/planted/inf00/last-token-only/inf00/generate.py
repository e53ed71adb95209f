from solutions.inf00.generate import *  # noqa: F401,F403
from solutions.inf00.generate import _as_batch

import torch


@torch.inference_mode()
def greedy_generate(model, prompt_ids, max_new_tokens, eos_token_id=None):
    device = next(model.parameters()).device
    ids = _as_batch(prompt_ids, device)
    new_ids = []
    for _ in range(max_new_tokens):
        next_id = model(ids, last_only=True)[0, -1].argmax()
        new_ids.append(int(next_id))
        if new_ids[-1] == eos_token_id:
            break
        ids = next_id.view(1, 1)                 # wrong: drops everything before the newest token
    return new_ids
