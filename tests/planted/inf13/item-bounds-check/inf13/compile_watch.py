from solutions.inf13.compile_watch import *  # noqa: F401,F403
