from solutions.inf14.llm_int8 import *  # noqa: F401,F403
import torch


def llm_int8_matmul(x, wq, w_scale, threshold=6.0):
    regular = x.clone()
    regular[:, outlier_columns(x, threshold)] = 0
    xq, x_scale = quantize_per_token(regular)
    return w8a8_matmul(xq, x_scale, wq, w_scale, out_dtype=torch.float32).to(x.dtype)
