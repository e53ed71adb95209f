from solutions.inf14.weight_only import *  # noqa: F401,F403
