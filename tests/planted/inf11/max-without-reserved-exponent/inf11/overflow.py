from solutions.inf11.overflow import *  # noqa: F401,F403
