"""The real model's tokenizer, built from the metadata of its GGUF file with the `tokenizers` library.

SmolLM2 uses GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`) with llama.cpp's `smollm`
pre-tokenizer, which first splits every digit on its own ("2024" -> "2" "0" "2" "4") and then applies
GPT-2's split regex. transformers' GGUF conversion misses the digit split; this one has it, so its ids
match llama.cpp's (and the original Hugging Face tokenizer.json's `Digits(individual_digits=True)`).

The built tokenizer is cached as JSON next to the weights (see `lab.weights.cache_path`), because
parsing the GGUF vocabulary takes ~2 s and every test process needs a tokenizer.
"""
from __future__ import annotations

import json
import numbers
from functools import lru_cache
from typing import Sequence

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from lab.weights import cache_path, gguf_field, gguf_reader, write_atomically

# llama.cpp token types (gguf.TokenType): 1 normal, 3 control (special), 4 user-defined.
_CONTROL, _USER_DEFINED = 3, 4
# What the cache file holds: the `tokenizers` JSON and the Tokenizer's other arguments.
_SPEC_KEYS = {"backend", "chat_template", "bos_token_id", "eos_token_id", "pad_token_id", "add_bos_token"}


class Tokenizer:
    """Text <-> token ids for the real model, and its ChatML chat template.

    Invariant: `decode(encode(text)) == text` for any text (byte-level BPE loses nothing).
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, chat_template: str, bos_token_id: int,
                 eos_token_id: int, pad_token_id: int, add_bos_token: bool):
        self.backend = backend
        self.chat_template = chat_template
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id
        self.add_bos_token = add_bos_token

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (= the model's embedding rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`. Special tokens written in the text ("<|im_start|>") become their ids.

        With `add_special_tokens=True` a BOS id is prepended if the model asks for one; SmolLM2 does not,
        so the flag changes nothing for it.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str, got {type(text).__name__}; encode a list of texts one by one")
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return [self.bos_token_id, *ids] if add_special_tokens and self.add_bos_token else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of token ids (a list of ints or a 1-D integer tensor)."""
        if hasattr(ids, "tolist"):   # a tensor or a numpy array
            ids = ids.tolist()
        if isinstance(ids, (numbers.Integral, str)) or not all(isinstance(i, numbers.Integral) for i in ids):
            raise TypeError("decode takes a flat sequence of int token ids (one sequence, not a batch)")
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}); got {bad[:5]}")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token(self, token_id: int) -> str:
        """The vocabulary entry of one id, in byte-level form ('Ġthe' for ' the')."""
        entry = self.backend.id_to_token(token_id)
        if entry is None:
            raise ValueError(f"token id must be in [0, {self.vocab_size}); got {token_id!r}")
        return entry

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as the model's chat template (ChatML) renders it, as text.

        messages: [{"role": "system" | "user" | "assistant", "content": str}, ...]. Without a system
        message the template adds SmolLM2's default one. With `add_generation_prompt` the text ends with
        "<|im_start|>assistant\\n", where the model's answer starts. Encode the result with `encode`.
        """
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise ValueError('messages must be a non-empty list of {"role": str, "content": str} dicts, e.g. '
                             '[{"role": "user", "content": "Hello"}]')
        return _compiled_template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt)


@lru_cache(maxsize=4)
def _compiled_template(source: str):
    # The environment transformers uses for chat templates, so both render the same text.
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return env.from_string(source)


def build_backend(tokens: list[str], merges: list[str], token_types: list[int]) -> tokenizers.Tokenizer:
    """A byte-level BPE `tokenizers.Tokenizer` from the GGUF vocabulary, with the digit-splitting pre-tokenizer."""
    vocab = {token: token_id for token_id, token in enumerate(tokens)}
    merge_pairs = [(left, right) for left, right in (m.split(" ", 1) for m in merges)]   # "Ġ t" -> ("Ġ", "t")
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),                     # llama.cpp's `smollm`: "\p{N}"
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),  # then GPT-2's regex, bytes -> chars
    ])
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, kind in zip(tokens, token_types) if kind == _CONTROL])
    backend.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t, kind in zip(tokens, token_types) if kind == _USER_DEFINED])
    return backend


def _tokenizer_spec_from_gguf() -> dict:
    reader = gguf_reader()

    def get(key):
        return gguf_field(reader, f"tokenizer.{key}")

    if get("ggml.model") != "gpt2":
        raise RuntimeError(f"the GGUF tokenizer is {get('ggml.model')!r}; lab.tokenizer builds 'gpt2' (byte-level BPE)")
    if get("ggml.pre") != "smollm":
        raise RuntimeError(f"the GGUF pre-tokenizer is {get('ggml.pre')!r}; lab.tokenizer implements 'smollm'")
    backend = build_backend(get("ggml.tokens"), get("ggml.merges"), get("ggml.token_type"))
    eos, pad = get("ggml.eos_token_id"), get("ggml.padding_token_id")
    return {"backend": backend.to_str(), "chat_template": get("chat_template"),
            "bos_token_id": get("ggml.bos_token_id"), "eos_token_id": eos,
            "pad_token_id": eos if pad is None else pad, "add_bos_token": bool(get("ggml.add_bos_token"))}


@lru_cache(maxsize=1)
def load_tokenizer() -> Tokenizer:
    """The real model's tokenizer (built from the GGUF file on first use, then read from the cache)."""
    path = cache_path("tokenizer", ".json")
    spec = None
    if path.is_file():
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            spec = None   # unreadable: rebuild it below
    if not isinstance(spec, dict) or set(spec) != _SPEC_KEYS:
        spec = _tokenizer_spec_from_gguf()
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(spec), encoding="utf-8"))
    backend = tokenizers.Tokenizer.from_str(spec.pop("backend"))
    return Tokenizer(backend, **spec)
