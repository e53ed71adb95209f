from solutions.inf13.decode_step import *  # noqa: F401,F403
