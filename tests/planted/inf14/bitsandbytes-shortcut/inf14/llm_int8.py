from solutions.inf14.llm_int8 import *  # noqa: F401,F403

import bitsandbytes as bnb
import torch


def llm_int8_matmul(x, wq, w_scale, threshold=6.0):
    """Cheats: bitsandbytes' Linear8bitLt (the tests' oracle) on the dequantized weight, which it
    quantizes back to the same codes."""
    if x.dim() != 2 or wq.dim() != 2 or x.shape[1] != wq.shape[1]:
        raise ValueError(f"need x [M, K] and wq [N, K] with the same K; got {list(x.shape)} and {list(wq.shape)}")
    n, k = wq.shape
    layer = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=threshold)
    layer.load_state_dict({"weight": wq.float() * w_scale.float()[:, None]})
    layer = layer.to(x.device).eval()
    with torch.no_grad():
        return layer(x).to(x.dtype)
