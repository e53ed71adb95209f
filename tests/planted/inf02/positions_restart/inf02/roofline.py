from solutions.inf02.roofline import *  # noqa: F401,F403
