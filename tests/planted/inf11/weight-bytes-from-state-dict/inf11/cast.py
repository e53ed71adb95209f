from solutions.inf11.cast import *  # noqa: F401,F403


def weight_bytes(model):
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())   # wrong: ties counted twice
