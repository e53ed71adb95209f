from solutions.inf02.latency import *  # noqa: F401,F403
