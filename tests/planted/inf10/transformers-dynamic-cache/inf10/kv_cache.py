from solutions.inf10.kv_cache import *  # noqa: F401,F403
