"""The oracle: Hugging Face transformers' LlamaForCausalLM, loaded by transformers itself from the same GGUF file.

It shares nothing with the lab's model but the file: transformers parses the metadata, dequantizes the
tensors and undoes llama.cpp's q/k permutation on its own. Tests compare the lab's model, and students'
parts plugged into it, against this. transformers' own GGUF conversion takes ~15 s on a CPU, so the model
is kept per process, and the weights transformers produced are saved once in the lab's cache folder
(`<cache>/smollm2-135m-hf-oracle-*/`, a config.json and model.safetensors written by transformers' own
classes); later processes load that in under a second. Nothing of the lab's conversion enters it.

The grader never lets a submission's process near the instructor's copy of that folder: it builds the
cache in a private folder (`python -m lab.weights --build-cache DIR`, which calls `build_cache()`),
records each file's sha256, and gives each sandbox a verified read-only copy (grading/isolate.py).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from functools import lru_cache

import torch

from lab.weights import cache_path, gguf_path


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

    saved = cache_path("hf-oracle", "")
    if not (saved / "model.safetensors").is_file():
        _save_converted(saved)
    if (saved / "model.safetensors").is_file():
        try:
            with _quiet():
                return AutoModelForCausalLM.from_pretrained(saved, dtype=dtype).eval()
        except Exception as e:          # a damaged cache is rebuilt, never trusted
            warnings.warn(f"ignoring the unreadable oracle cache {saved} ({e}); converting the GGUF file again",
                          stacklevel=3)
            shutil.rmtree(saved, ignore_errors=True)
    return _convert_gguf(dtype)


def build_cache() -> None:
    """Write the oracle's saved conversion into the cache folder now (nothing is loaded)."""
    saved = cache_path("hf-oracle", "")
    if not (saved / "model.safetensors").is_file():
        _save_converted(saved)
    if not (saved / "model.safetensors").is_file():
        raise RuntimeError(f"could not write the oracle cache {saved}")


def _convert_gguf(dtype: torch.dtype):
    """transformers' LlamaForCausalLM converted by transformers from the GGUF file (~15 s on a CPU)."""
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model.eval()


def _save_converted(folder) -> None:
    """Convert once in float32 and save transformers' weights and config into `folder`, atomically (a
    temporary folder renamed into place: a racing process that loses the rename throws its copy away)."""
    from safetensors.torch import save_file

    model = _convert_gguf(torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):     # the GGUF file's loading hint, not part of the model
        del config.quantization_config
    # The head is tied to the embedding: transformers re-ties it on load, so it is saved once.
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (k == "lm_head.weight" and config.tie_word_embeddings)}
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.")
        config.save_pretrained(tmp)
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)
    except OSError as e:
        if not (folder / "model.safetensors").is_file():
            warnings.warn(f"could not write the oracle cache {folder} ({e}); set LAB_CACHE_DIR to a writable "
                          "folder so that later loads are fast", stacklevel=4)
    finally:
        if tmp is not None and os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


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
