"""What may be banned: targets, the shared lists topic.toml names with "@name", and the error a ban raises.

A target is a module ("bitsandbytes", and all under it) or a callable by dotted path
("torch.nn.functional.scaled_dot_product_attention", "lab.model.LlamaModel.__init__"). A topic declares
its bans once, in exercises/infNN/topic.toml (see grading/topics.py):

    [[bans]]
    targets = ["@library-attention", "lab.model.sdpa_attention"]
    reason = "write the attention yourself: torch SDPA is the tests' peer"
"""
from __future__ import annotations

import importlib
import importlib.util
import types

LIBRARY_ATTENTION = (
    "torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention.forward",
    "torch.nn.attention.flex_attention", "lab.model.sdpa_attention", "flash_attn", "xformers")
QUANTIZATION_LIBRARIES = ("bitsandbytes", "torchao", "auto_gptq", "gptqmodel", "awq", "optimum.quanto",
                          "hqq", "quanto")
TORCH_QUANTIZATION = (
    "torch.ao", "torch.quantization", "torch.nn.quantized", "torch.nn.quantizable", "torch.nn.intrinsic",
    "torch.nn.qat", "torch.quantize_per_tensor", "torch.quantize_per_tensor_dynamic", "torch.quantize_per_channel",
    "torch.fake_quantize_per_tensor_affine", "torch.fake_quantize_per_channel_affine")
# The shortcuts of the quantization topics: a library, or torch's own packed kernels, doing the student's work.
INT8_SHORTCUTS = (*QUANTIZATION_LIBRARIES, *TORCH_QUANTIZATION, "torch._weight_int8pack_mm")
INT4_SHORTCUTS = (*QUANTIZATION_LIBRARIES, *TORCH_QUANTIZATION, "torch._convert_weight_to_int4pack",
                  "torch._convert_weight_to_int4pack_for_cpu", "torch._weight_int4pack_mm",
                  "torch._weight_int4pack_mm_for_cpu", "torch._weight_int4pack_mm_with_scales_and_zeros")
LIBRARY_PERCENTILES = (
    "numpy.percentile", "numpy.quantile", "numpy.nanpercentile", "numpy.nanquantile", "torch.quantile",
    "torch.nanquantile", "torch.Tensor.quantile", "torch.Tensor.nanquantile", "statistics.quantiles", "pandas",
    "scipy")
NAMED = {
    "@library-attention": LIBRARY_ATTENTION, "@quantization-libraries": QUANTIZATION_LIBRARIES,
    "@torch-quantization": TORCH_QUANTIZATION, "@int8-shortcuts": INT8_SHORTCUTS,
    "@int4-shortcuts": INT4_SHORTCUTS, "@library-percentiles": LIBRARY_PERCENTILES,
}


class BannedError(RuntimeError):
    """The student's code reached something the running test bans."""


class BannedImport(BannedError, ImportError):
    """The student's code imported a banned module (an ImportError too, as any failed import is)."""


def expand(targets) -> list[str]:
    """Targets with each "@name" replaced by its list, in order, each once. Raises ValueError naming an
    unknown "@name" and the known ones."""
    out: list[str] = []
    for target in targets:
        if isinstance(target, str) and target.startswith("@"):
            if target not in NAMED:
                raise ValueError(f"{target!r} names no shared list; known: {', '.join(NAMED)}")
            out += NAMED[target]
        else:
            out.append(target)
    return list(dict.fromkeys(out))


def resolve(target: str) -> tuple[object, str, object] | None:
    """(owner, attribute, object) of a dotted callable path, or None when it names no callable.
    Imports the owner's module: call it when bans are set up, never on an import or a call."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                owner = getattr(owner, name)
            obj = getattr(owner, parts[-1])
        except AttributeError:
            return None
        return (owner, parts[-1], obj) if callable(obj) and not isinstance(obj, types.ModuleType) else None
    return None


def is_module_target(target: str) -> bool:
    """A module (installed or not) rather than a callable: "transformers", "flash_attn", "lab.oracle"."""
    try:
        if importlib.util.find_spec(target) is not None:
            return True
    except (ImportError, ValueError, AttributeError):
        pass
    return resolve(target) is None


def names_nothing(target: str) -> bool:
    """A dotted path under an importable package that is neither a module nor a callable there: a typo
    ("torch.nn.functional.scaled_dot_attention"). A top-level name that is not installed is a fine target
    (flash_attn, a library the student might install)."""
    head = target.split(".")[0]
    try:
        if importlib.util.find_spec(head) is None:
            return False
        return importlib.util.find_spec(target) is None and resolve(target) is None
    except (ImportError, ValueError, AttributeError):
        return resolve(target) is None
