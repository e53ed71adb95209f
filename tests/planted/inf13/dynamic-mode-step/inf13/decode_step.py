from solutions.inf13.decode_step import *  # noqa: F401,F403

import torch


def make_decode_step(model, cache):
    if not hasattr(cache, "max_len"):
        raise ValueError("needs a static cache")

    def step(token_ids, cache_position):
        with torch.no_grad():                                # wrong: cache.seq_len decides the slot
            return model(token_ids, cache=cache, last_only=True)[:, -1]

    return step
