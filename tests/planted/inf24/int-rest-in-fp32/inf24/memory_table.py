from solutions.inf24.memory_table import *  # noqa: F401,F403


def convert_model(model, fmt, group_size=32):
    check_format(fmt)
    if fmt in DTYPES:
        return copy.deepcopy(model).to(DTYPES[fmt])
    return copy.deepcopy(model).replace_linears(lambda name, linear: QuantizedLinear.from_linear(linear, fmt, group_size))
