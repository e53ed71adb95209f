from solutions.inf11.formats import *  # noqa: F401,F403
