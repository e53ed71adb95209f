from solutions.inf00.counts import *  # noqa: F401,F403
from solutions.inf00.counts import matmul_params


def forward_flops(config, num_tokens, past_len=0, batch=1):
    keys = past_len + (num_tokens + 1) / 2       # wrong: the average causal key count
    linear = 2 * num_tokens * matmul_params(config)
    attention = config.num_layers * 4 * num_tokens * keys * config.num_heads * config.head_dim
    return int(batch * (linear + attention))
