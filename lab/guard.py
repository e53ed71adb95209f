"""Moved: the anti-cheat code is the grader's, in grading/guard/ (bans are declared in topic.toml).
Kept so that a test written before the move (`from lab import guard`, `guard.INT8_SHORTCUTS` on a line
marked `# TOPIC.TOML-BANS`) still imports; new code uses topic.toml's "@name" lists."""
from grading.guard.bans import (INT4_SHORTCUTS, INT8_SHORTCUTS, LIBRARY_ATTENTION,  # noqa: F401
                                LIBRARY_PERCENTILES, QUANTIZATION_LIBRARIES, TORCH_QUANTIZATION, BannedError)
from grading.guard.runtime import banned  # noqa: F401
