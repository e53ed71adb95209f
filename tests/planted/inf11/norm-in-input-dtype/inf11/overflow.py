from solutions.inf11.overflow import *  # noqa: F401,F403

import torch


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))   # wrong: squares in x.dtype
