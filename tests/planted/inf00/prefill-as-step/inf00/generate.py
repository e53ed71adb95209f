from solutions.inf00.generate import *  # noqa: F401,F403

import time

import torch

from solutions.inf00.generate import GenerationTiming, _as_batch


@torch.inference_mode()
def timed_generate(model, prompt_ids, max_new_tokens):
    device = next(model.parameters()).device
    ids = _as_batch(prompt_ids, device)
    new_ids, times = [], []
    start = time.perf_counter()                  # wrong: the clock is restarted after the token, so TTFT is lost and steps shift
    for _ in range(max_new_tokens):
        next_id = model(ids, last_only=True)[0, -1].argmax()
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        new_ids.append(int(next_id))
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return GenerationTiming(new_ids=new_ids, ttft_s=0.0, step_s=times)
