from solutions.inf00.counts import *  # noqa: F401,F403
