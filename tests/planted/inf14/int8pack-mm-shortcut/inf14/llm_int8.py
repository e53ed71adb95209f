from solutions.inf14.llm_int8 import *  # noqa: F401,F403
