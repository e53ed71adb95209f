from solutions.inf00.generate import *  # noqa: F401,F403
