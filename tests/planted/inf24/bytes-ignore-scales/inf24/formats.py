from solutions.inf24.formats import *  # noqa: F401,F403


def linear_bytes(out_features, in_features, fmt, group_size=32):
    check_format(fmt, in_features, group_size)
    values = out_features * in_features
    return values * {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}.get(fmt, 0) or values // 2


def model_bytes(config, fmt, group_size=32):
    h, f, c = config.hidden_size, config.intermediate_size, config
    shapes = [(c.q_size, h), (c.kv_size, h), (c.kv_size, h), (h, c.q_size), (f, h), (f, h), (h, f)]
    projections = c.num_layers * sum(linear_bytes(n, k, fmt, group_size) for n, k in shapes)
    rest = c.vocab_size * h * (1 if c.tie_word_embeddings else 2) + (2 * c.num_layers + 1) * h
    return projections + rest * FLOAT_BYTES.get(fmt, 2)
