from solutions.inf12.batch_generate import *  # noqa: F401,F403
