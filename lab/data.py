"""Text the lab feeds the real model: short prompts for generation, and English prose for perplexity.

The evaluation prose ships with the lab, so that a perplexity figure reads the same on every machine and
every Python: `lab/texts/python-3.11-reference.txt` is four prose-heavy sections of the Python Language
Reference (the help() topics "objects", "execmodel", "truth" and "binary" of Python 3.11.7's
`pydoc_data.topics`, joined by blank lines): 18,584 characters, 4,467 tokens of the real model's
tokenizer. It is Python's documentation, under the PSF License Agreement: `lab/texts/LICENSE-PSF.txt`.
(The lab once read it from the installed Python, whose copy changes between minor versions: 3.12 has
22,622 characters there. Every figure in the lessons and docs was measured on this text; its sha256 is
`EVAL_TEXT_SHA256`, and `eval_text()` refuses a file that does not match it.)
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from lab.tokenizer import Tokenizer, load_tokenizer

# help() topics of the Language Reference (Python 3.11.7) in the shipped text: objects and types, the
# execution model (naming, binding, exceptions), truth values, binary arithmetic. Mostly prose, some
# grammar and a little code.
EVAL_TOPICS: tuple[str, ...] = ("objects", "execmodel", "truth", "binary")
EVAL_TEXT_FILE = Path(__file__).resolve().parent / "texts" / "python-3.11-reference.txt"
EVAL_TEXT_SHA256 = "7ac57e76a37255298fa307584aacd388e9fccf368bfed7df85adff09ce5d6cdb"     # 18,584 characters

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


@lru_cache(maxsize=1)
def eval_text() -> str:
    """The evaluation prose shipped with the lab (`EVAL_TEXT_FILE`), the same on every machine."""
    try:
        data = EVAL_TEXT_FILE.read_bytes()
    except OSError as e:
        raise RuntimeError(f"the lab's evaluation text {EVAL_TEXT_FILE} is missing ({e.strerror}); restore it "
                           "from the lab's repository (git checkout lab/texts)") from None
    if hashlib.sha256(data).hexdigest() != EVAL_TEXT_SHA256:
        raise RuntimeError(f"{EVAL_TEXT_FILE} is not the lab's evaluation text (its sha256 differs from "
                           f"{EVAL_TEXT_SHA256}): a changed line changes every perplexity figure; restore it "
                           "(git checkout lab/texts), and check that git did not convert its line endings")
    return data.decode("utf-8")


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
