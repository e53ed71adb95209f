from solutions.inf10.decode import *  # noqa: F401,F403
