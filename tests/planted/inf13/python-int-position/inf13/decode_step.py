from solutions.inf13.decode_step import *  # noqa: F401,F403

import torch


def make_decode_step(model, cache):
    if not hasattr(cache, "max_len"):
        raise ValueError("needs a static cache")
    for buffer in cache.k + cache.v:
        torch._dynamo.mark_static_address(buffer)

    def step(token_ids, cache_position):
        if not isinstance(cache_position, torch.Tensor):     # wrong: a Python int is a constant to dynamo
            cache_position = torch.tensor([cache_position], device=token_ids.device)
        with torch.no_grad():
            return model(token_ids, cache=cache, cache_position=cache_position, last_only=True)[:, -1]

    return step


def greedy_decode(step, token_ids, start_position, num_steps):
    if token_ids.dim() != 2 or token_ids.shape[1] != 1 or start_position < 0 or num_steps < 0:
        raise ValueError("bad arguments")
    new_ids = []
    for i in range(num_steps):
        token_ids = step(token_ids, start_position + i).argmax(-1, keepdim=True)
        new_ids.append(token_ids)
    return torch.cat(new_ids, dim=1) if new_ids else token_ids.new_empty(token_ids.shape[0], 0)
