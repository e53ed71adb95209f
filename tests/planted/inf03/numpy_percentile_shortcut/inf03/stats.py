from solutions.inf03.stats import *  # noqa: F401,F403
import numpy as np


def percentile(values, q):
    if not len(values) or not 0 <= q <= 100:
        raise ValueError("bad input")
    return float(np.percentile(values, q))
