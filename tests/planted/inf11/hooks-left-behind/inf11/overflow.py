from solutions.inf11.overflow import *  # noqa: F401,F403

import torch


@torch.inference_mode()
def residual_absmax(model, input_ids):
    found = [0.0] * len(model.layers)
    for i, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda m, inp, out, i=i: found.__setitem__(i, out.abs().max().item()))
    model(input_ids)                                                      # wrong: hooks stay attached
    return found
