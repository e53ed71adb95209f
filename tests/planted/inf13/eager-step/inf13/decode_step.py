from solutions.inf13.decode_step import *  # noqa: F401,F403


def compile_decode_step(step, mode="default"):
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    return step                                     # slow: eager, one Python dispatch per op
