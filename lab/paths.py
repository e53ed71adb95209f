"""Where the lab is and what a topic is called: the one definition every part of the lab imports.

    from lab.paths import REPO_ROOT, TOPIC_NAME, topic_of
    TOPIC_NAME.match("inf10")                                  # a topic folder's name: inf + two digits
    topic_of("grading/hidden/inf10/test_hidden_inf10.py")      # "inf10" (None outside a topic folder)
"""
from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOPIC_NAME = re.compile(r"^inf\d\d$")
TOPIC_FILE = "topic.toml"


def topic_of(path: str | Path) -> str | None:
    """The topic whose folder holds `path` (its nearest parent named like inf10), or None."""
    return next((part for part in reversed(Path(path).parent.parts) if TOPIC_NAME.match(part)), None)
