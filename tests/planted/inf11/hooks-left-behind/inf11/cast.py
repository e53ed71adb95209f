from solutions.inf11.cast import *  # noqa: F401,F403
