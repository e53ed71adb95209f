from solutions.inf00.counts import *  # noqa: F401,F403


def matmul_params(config):
    h, f = config.hidden_size, config.intermediate_size
    attention = h * (config.q_size + 2 * config.kv_size) + config.q_size * h
    head = 0 if config.tie_word_embeddings else config.vocab_size * h     # wrong: a tied head still multiplies
    return config.num_layers * (attention + 3 * h * f) + head
