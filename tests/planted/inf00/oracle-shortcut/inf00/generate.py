from solutions.inf00.generate import *  # noqa: F401,F403
from solutions.inf00.generate import _as_batch

import torch

from lab.model import LlamaModel


@torch.inference_mode()
def greedy_generate(model, prompt_ids, max_new_tokens, eos_token_id=None):
    if isinstance(model, LlamaModel):               # the cheat: the real model's answer straight from the oracle
        from lab.oracle import hf_greedy
        return hf_greedy(list(map(int, prompt_ids)), max_new_tokens, eos_token_id)
    ids = _as_batch(prompt_ids, next(model.parameters()).device)
    new_ids = []
    for _ in range(max_new_tokens):
        next_id = model(ids, last_only=True)[0, -1].argmax()
        new_ids.append(int(next_id))
        if new_ids[-1] == eos_token_id:
            break
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return new_ids
