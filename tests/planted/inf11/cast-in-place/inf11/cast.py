from solutions.inf11.cast import *  # noqa: F401,F403

import torch


def cast_model(model, dtype):
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype!r}")
    return model.to(dtype).eval()                                         # wrong: the caller's model changes
