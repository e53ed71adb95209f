from solutions.inf03.stats import *  # noqa: F401,F403
