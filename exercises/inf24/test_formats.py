"""inf24 tests: bytes by storage format, against counts taken from the lab model's own tensors.

The oracle walks the parameters of a `lab.model.LlamaModel` built on the meta device (no memory) and
prices each one: projections (2-D weights inside the layers) at the format's codes + fp16 scales, the
rest at the format's float size (bf16 for int8/int4), a tied embedding once.
"""
import pytest
import torch

from lab.config import SHAPES
from lab.impl import Topic
from lab.model import LlamaModel
from lab.testing import pick, raises, random_config

impl = Topic("inf24")
FORMATS = ("fp32", "fp16", "bf16", "int8", "int4")


def oracle_linear_bytes(n: int, k: int, fmt: str, group_size: int) -> int:
    if fmt in ("fp32", "fp16", "bf16"):
        return n * k * {"fp32": 4, "fp16": 2, "bf16": 2}[fmt]
    if fmt == "int8":
        return n * k + 2 * n                                    # codes + one fp16 scale per row
    return n * k // 2 + 2 * (n * k // group_size)              # two codes a byte + one fp16 scale per group


def oracle_model_bytes(config, fmt: str, group_size: int) -> int:
    with torch.device("meta"):
        model = LlamaModel(config)
    total, seen = 0, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue                                           # the tied head is the embedding
        seen.add(id(p))
        if name.startswith("layers.") and p.dim() == 2:
            total += oracle_linear_bytes(p.shape[0], p.shape[1], fmt, group_size)
        else:
            total += p.numel() * {"fp32": 4}.get(fmt, 2)       # fp16/bf16, and bf16 beside int8/int4
    return total


def grouped_config(rng, group_size: int):
    """A small random config whose every projection input (hidden, q_size, ffn) is a multiple of group_size."""
    return random_config(rng, hidden_size=group_size * pick(rng, 1, 3), head_dim=group_size,
                         intermediate_size=group_size * pick(rng, 2, 5))


@pytest.mark.parametrize("fmt", FORMATS)
def test_linear_bytes_count_codes_and_scales(rng, fmt):
    group_size = [32, 64, 128][pick(rng, 0, 2)]
    n, k = pick(rng, 1, 300) | 1, group_size * pick(rng, 1, 9)
    got = impl.formats.linear_bytes(n, k, fmt, group_size)
    want = oracle_linear_bytes(n, k, fmt, group_size)
    assert got == want, (f"[{n}, {k}] in {fmt} (groups of {group_size}): expected {want:,} bytes, got {got:,}. "
                         "int8 and int4 store fp16 scales too: 2 bytes per row (int8) or per group (int4)")


@pytest.mark.parametrize("shape", ["random", "smollm2-135m", "llama-3-8b"])
def test_model_bytes_price_every_stored_tensor(rng, shape):
    group_size = 32 if shape != "random" else [16, 32][pick(rng, 0, 1)]
    config = grouped_config(rng, group_size) if shape == "random" else SHAPES[shape]
    for fmt in FORMATS:
        got = impl.formats.model_bytes(config, fmt, group_size)
        want = oracle_model_bytes(config, fmt, group_size)
        assert got == want, (
            f"{shape} in {fmt}: the model's tensors take {want:,} bytes, model_bytes says {got:,} "
            f"({got - want:+,}). Projections in {fmt} with their scales; embedding, "
            f"{'' if config.tie_word_embeddings else 'head, '}"
            f"norms at {'bf16' if fmt in ('int8', 'int4') else fmt}; a tied head counted once")


def test_formats_reject_bad_arguments():
    assert impl.formats.linear_bytes(4, 64, "int4", 32) == 4 * 32 + 2 * 8
    with raises(ValueError, because="linear_bytes for 'int3': not a format of the lab"):
        impl.formats.linear_bytes(4, 64, "int3")
    with raises(ValueError, because="linear_bytes for int4 in groups of 64 over K=96: the groups do not tile K"):
        impl.formats.linear_bytes(4, 96, "int4", 64)             # groups of 64 do not tile 96
