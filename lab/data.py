"""Text the lab feeds the real model: short prompts for generation, and English prose for perplexity.

Every machine must have the text offline, so the evaluation prose comes from CPython itself:
`pydoc_data.topics` holds the Python Language Reference as plain text, one entry per help() topic. We use a
fixed selection of prose-heavy topics (`EVAL_TOPICS`, help() labels found in Python 3.11 and 3.12).
CPython regenerates that text at each release, so a perplexity figure compares across machines only for
the same text: `eval_text_sha256()` identifies it, and docs/ records it beside every figure. The text
differs between minor versions (3.12 added sections to the execution model: 22,622 characters against
18,584, 4,467 tokens, on 3.11.7), so compare figures on the same Python version.
"""
from __future__ import annotations

import hashlib
import sys

from lab.tokenizer import Tokenizer, load_tokenizer

# help() topics of the Language Reference: objects and types, the execution model (naming, binding,
# exceptions), truth values, binary arithmetic. Mostly prose, some grammar and a little code.
EVAL_TOPICS: tuple[str, ...] = ("objects", "execmodel", "truth", "binary")

# sha256 of eval_text() per Python version it was measured on.
EVAL_TEXT_SHA256: dict[str, str] = {
    "3.11.7": "7ac57e76a37255298fa307584aacd388e9fccf368bfed7df85adff09ce5d6cdb",   # 18,584 characters
    "3.12.3": "808fb781b9a6a0403e94e39f10aa3b5e4236f7174710a33f0a38ee15c4f779f8",   # 22,622 characters
}

# Short, varied prompts for generation tests: instructions, facts, a story, code, arithmetic, a list.
PROMPTS: list[str] = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in two sentences why the sky is blue.",
    "Once upon a time, in a small village by the mountains,",
    "Write a Python function that returns the square of a number.",
    "What is 12 plus 30?",
    "List three fruits that are red.",
    "Give me one tip for sleeping better.",
]


def eval_text() -> str:
    """The evaluation prose: the `EVAL_TOPICS` entries of `pydoc_data.topics`, joined by blank lines."""
    from pydoc_data.topics import topics

    missing = [key for key in EVAL_TOPICS if key not in topics]
    if missing:
        raise RuntimeError(f"pydoc_data.topics of Python {sys.version.split()[0]} lacks {missing}; "
                           "lab.data.EVAL_TOPICS needs updating for this Python version")
    return "\n\n".join(topics[key].strip() for key in EVAL_TOPICS) + "\n"


def eval_text_sha256() -> str:
    """The sha256 of `eval_text()`: record it next to any figure measured on that text."""
    return hashlib.sha256(eval_text().encode("utf-8")).hexdigest()


def eval_token_ids(tokenizer: Tokenizer | None = None, max_tokens: int | None = None) -> list[int]:
    """`eval_text()` as token ids (no BOS), cut to the first `max_tokens` if given."""
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"max_tokens must be at least 2 (perplexity predicts each token from the previous), "
                         f"got {max_tokens}")
    ids = (tokenizer or load_tokenizer()).encode(eval_text())
    return ids if max_tokens is None else ids[:max_tokens]


def chat_prompt(text: str, tokenizer: Tokenizer | None = None) -> str:
    """`text` as one user turn in the model's chat template, ready for the assistant's answer."""
    return (tokenizer or load_tokenizer()).apply_chat_template([{"role": "user", "content": text}])
