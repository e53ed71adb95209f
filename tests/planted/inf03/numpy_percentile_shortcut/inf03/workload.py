from solutions.inf03.workload import *  # noqa: F401,F403
