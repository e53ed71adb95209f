from solutions.inf14.int8_matmul import *  # noqa: F401,F403
import torch


def int8_matmul(xq, wq):
    return (xq.float() @ wq.float().t()).to(torch.int32)
