from solutions.inf11.error import *  # noqa: F401,F403
