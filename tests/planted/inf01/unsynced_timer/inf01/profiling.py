from solutions.inf01.profiling import *  # noqa: F401,F403
