from solutions.inf02.chunked_prefill import *  # noqa: F401,F403
