"""The oracle: Hugging Face transformers' LlamaForCausalLM, loaded by transformers itself from the same GGUF file.

It shares nothing with the lab's model but the file: transformers parses the metadata, dequantizes the
tensors and undoes llama.cpp's q/k permutation on its own. Tests compare the lab's model, and students'
parts plugged into it, against this. Loading takes ~10-20 s on a CPU, so the model is kept per process.
"""
from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import torch

from lab.weights import gguf_path


@contextlib.contextmanager
def _quiet():
    """Silence transformers' logging and the progress bars it prints while converting a GGUF file."""
    import transformers

    logging = transformers.utils.logging
    verbosity, had_bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        # The GGUF converter draws its bar with tqdm directly, on stderr; errors still raise.
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.set_verbosity(verbosity)
        if had_bars:
            logging.enable_progress_bar()


def load_hf_model(dtype: torch.dtype = torch.float32):
    """transformers' LlamaForCausalLM for the real model, in `dtype` on the CPU, in eval mode (cached).

    The same object is returned on every call with the same dtype: do not modify it.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"the oracle loads in torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}")
    return _load_hf_model(dtype)


@lru_cache(maxsize=2)
def _load_hf_model(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model.eval()


@torch.no_grad()
def hf_logits(prompt_ids: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """transformers' logits [len(prompt_ids), vocab_size] (float32) for one prompt."""
    if len(prompt_ids) == 0:
        raise ValueError("hf_logits needs at least one prompt token")
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1)
    return load_hf_model(dtype)(input_ids=ids).logits[0].float()


@torch.no_grad()
def hf_greedy(prompt_ids: list[int], max_new_tokens: int, eos_token_id: int | None = None,
              dtype: torch.dtype = torch.float32) -> list[int]:
    """The new tokens of transformers' greedy `generate` after `prompt_ids` (the prompt not included).

    Same contract as a plain greedy loop: `max_new_tokens` tokens, or fewer when `eos_token_id` is given
    and generated (it is kept, and generation stops right after it). With `eos_token_id=None` generation
    never stops early, even past the model's own end-of-sequence token.
    """
    if len(prompt_ids) == 0:
        raise ValueError("hf_greedy needs at least one prompt token")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens == 0:
        return []
    model = load_hf_model(dtype)
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1)
    with _quiet():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, temperature=None, top_p=None, top_k=None,
                             eos_token_id=eos_token_id, pad_token_id=model.config.eos_token_id)
    return out[0, ids.shape[1]:].tolist()
