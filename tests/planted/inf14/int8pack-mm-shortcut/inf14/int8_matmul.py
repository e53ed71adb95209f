from solutions.inf14.int8_matmul import *  # noqa: F401,F403
