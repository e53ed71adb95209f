"""Perplexity of the real model in fp32 and bf16 on the shipped evaluation text (inf11's README row)."""
import time

import torch

from lab.data import eval_text_sha256, eval_token_ids
from lab.eval import perplexity
from lab.weights import load_real_model

torch.set_num_threads(1)
ids = eval_token_ids(max_tokens=2048)
print("text sha256", eval_text_sha256(), "tokens", len(ids))
with torch.no_grad():
    for dtype in (torch.float32, torch.bfloat16):
        t = time.time()
        model = load_real_model().to(dtype)
        print(dtype, f"{perplexity(model, ids, window=512, stride=512):.4f}", f"{time.time() - t:.0f} s", flush=True)
