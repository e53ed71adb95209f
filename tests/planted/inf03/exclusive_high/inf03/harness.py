from solutions.inf03.harness import *  # noqa: F401,F403
