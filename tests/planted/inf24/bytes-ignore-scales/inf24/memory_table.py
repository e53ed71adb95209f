from solutions.inf24.memory_table import *  # noqa: F401,F403
