from solutions.inf24.formats import *  # noqa: F401,F403
