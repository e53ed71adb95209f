from solutions.inf01.bandwidth import *  # noqa: F401,F403
