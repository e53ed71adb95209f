from solutions.inf01.utilization import *  # noqa: F401,F403
