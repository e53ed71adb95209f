from solutions.inf24.int4 import *  # noqa: F401,F403
