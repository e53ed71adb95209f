from solutions.inf11.cast import *  # noqa: F401,F403

import copy

import torch
import torch.nn.functional as F
from torch import nn


class UpcastLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight

    def forward(self, x):
        return F.linear(x.float(), self.weight.float()).to(x.dtype)       # wrong: an fp32 matmul


def cast_model(model, dtype):
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype!r}")
    half = copy.deepcopy(model).to(dtype).eval()
    return half.replace_linears(lambda name, linear: UpcastLinear(linear))
