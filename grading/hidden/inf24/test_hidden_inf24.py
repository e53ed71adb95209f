"""inf24 hidden tests: int4 packing and quantization at other group sizes and shapes, bytes of untied GQA
models at groups of 64 and 128, converting an untied model, int4/int8 layers at group 16 on 3-D inputs."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab.impl import Topic
from lab.model import LlamaModel
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf24")
FORMATS = ("fp32", "fp16", "bf16", "int8", "int4")


def oracle_linear_bytes(n, k, fmt, group_size):
    if fmt in ("fp32", "fp16", "bf16"):
        return n * k * {"fp32": 4, "fp16": 2, "bf16": 2}[fmt]
    if fmt == "int8":
        return n * k + 2 * n
    return n * k // 2 + 2 * (n * k // group_size)


def oracle_model_bytes(config, fmt, group_size):
    with torch.device("meta"):
        model = LlamaModel(config)
    total, seen = 0, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name.startswith("layers.") and p.dim() == 2:
            total += oracle_linear_bytes(p.shape[0], p.shape[1], fmt, group_size)
        else:
            total += p.numel() * {"fp32": 4}.get(fmt, 2)
    return total


def untied_config(rng, group_size):
    """Untied head, 4 query heads per KV head, every projection input a multiple of group_size."""
    kv = pick(rng, 1, 2)
    return random_config(rng, hidden_size=group_size * pick(rng, 1, 2), head_dim=group_size, num_kv_heads=kv,
                         num_heads=4 * kv, intermediate_size=group_size * pick(rng, 2, 3), tie_word_embeddings=False,
                         num_layers=pick(rng, 1, 2))


def decode_nibbles(packed):
    """Element 2i in the low nibble of byte i, 2i + 1 in the high nibble, stored as code + 8."""
    return torch.stack((packed % 16, packed // 16), dim=-1).flatten(-2).double() - 8


@pytest.mark.parametrize("group_size", [16, 128])
def test_hidden_int4_groups_of_16_and_128_with_negative_peaks(rng, group_size):
    """Groups whose largest |w| is negative (code -7), groups of many sizes, packing of a 3-D tensor."""
    n, k = pick(rng, 2, 17) | 1, group_size * pick(rng, 1, 4)
    w = torch.randn(n, k, generator=rng) * torch.logspace(-2, 1, n * k // group_size)[
        torch.randperm(n * k // group_size, generator=rng)].reshape(n, -1).repeat_interleave(group_size, dim=1)
    groups = w.view(n, -1, group_size)
    peak = groups.abs().argmax(-1, keepdim=True)
    groups.scatter_(-1, peak, -groups.gather(-1, peak).abs())            # every group's max |w| negative
    packed, scales = impl.int4.quantize_int4(w, group_size)
    assert packed.dtype == torch.uint8 and packed.shape == (n, k // 2)
    assert scales.dtype == torch.float16 and scales.shape == (n, k // group_size)
    amax = w.double().reshape(n, -1, group_size).abs().amax(-1)
    off = ((scales.double() - amax / 7).abs() / (amax / 7)).max().item()
    assert off <= 2**-11, (f"groups of {group_size}: each scale must be fp16(max |w| of the group / 7); worst "
                           f"{off:.1e} off")
    codes = decode_nibbles(packed).reshape(n, -1, group_size)
    scaled = w.double().reshape(n, -1, group_size) / scales.double()[..., None]
    assert ((codes - scaled).abs() <= 0.5 + 1e-6).all(), "codes must be round(w / stored scale) + 8, element 2i low"
    assert (codes.gather(-1, peak) <= -6).all(), "a group's negative peak must land on (about) code -7"
    back = impl.int4.dequantize_int4(packed, scales, group_size)
    assert torch.allclose(back.double(), (codes * scales.double()[..., None]).reshape(n, k), atol=1e-6)
    cube = torch.randint(0, 16, (3, pick(rng, 1, 5), 2 * pick(rng, 1, 9)), generator=rng, dtype=torch.uint8)
    want = cube[..., 0::2] + 16 * cube[..., 1::2]
    assert torch.equal(impl.int4.pack_int4(cube), want), "pack_int4 on a 3-D tensor: element 2i low, 2i + 1 high"
    assert torch.equal(impl.int4.unpack_int4(want), cube)


@pytest.mark.parametrize("group_size", [64, 128])
def test_hidden_model_bytes_of_untied_gqa_models(rng, group_size):
    """Untied head (priced once more, in the rest's dtype), wide GQA, groups of 64 and 128; a one-row projection."""
    config = untied_config(rng, group_size)
    for fmt in FORMATS:
        got = impl.formats.model_bytes(config, fmt, group_size)
        want = oracle_model_bytes(config, fmt, group_size)
        assert got == want, f"untied {config} in {fmt} (groups of {group_size}): expected {want:,} bytes, got {got:,}"
        k = group_size * pick(rng, 1, 5)
        assert impl.formats.linear_bytes(1, k, fmt, group_size) == oracle_linear_bytes(1, k, fmt, group_size), \
            f"[1, {k}] in {fmt}"


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_hidden_convert_an_untied_model(rng, fmt):
    """An untied wide-GQA model at groups of 64: the stored bytes, the original untouched, the logits of a bf16
    model rebuilt from the decoded stored weights."""
    group_size = 64
    config = untied_config(rng, group_size)
    model = random_lab_model(config, rng)
    before = copy.deepcopy(model.state_dict())
    converted = impl.memory_table.convert_model(model, fmt, group_size)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "convert a copy"
    want = oracle_model_bytes(config, fmt, group_size)
    assert converted.weight_bytes() == want, f"{fmt}: stores {converted.weight_bytes():,} bytes, expected {want:,}"
    rebuilt = copy.deepcopy(model).to(torch.bfloat16)
    stored = dict(converted.layers.named_modules())
    for name, module in rebuilt.layers.named_modules():
        if isinstance(module, nn.Linear):
            layer = stored[name]
            if fmt == "int8":
                w_deq = layer.qweight.double() * layer.scales.double()[:, None]
            else:
                w_deq = decode_nibbles(layer.qweight) * layer.scales.double().repeat_interleave(group_size, dim=1)
            module.weight.data = w_deq.to(torch.bfloat16)
    ids = torch.randint(config.vocab_size, (3, pick(rng, 1, 11)), generator=rng)
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).float(), rebuilt(ids).float(), rtol=1e-2, atol=1e-2,
                                   msg=lambda m: f"{fmt}: converted logits differ from the decoded bf16 model: {m}")


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_hidden_quantized_linear_group_16_on_3d_inputs(rng, fmt):
    """Groups of 16, a one-row projection and a wide one, 3-D float32 inputs of odd sizes."""
    group_size = 16
    for n in (1, pick(rng, 40, 90) | 1):
        k = group_size * pick(rng, 1, 7)
        linear = nn.Linear(k, n, bias=False)
        layer = impl.quantized_linear.QuantizedLinear.from_linear(linear, fmt, group_size)
        if fmt == "int8":
            w_deq, step = layer.qweight.double() * layer.scales.double()[:, None], layer.scales.double()[:, None]
        else:
            step = layer.scales.double().repeat_interleave(group_size, dim=1)
            w_deq = decode_nibbles(layer.qweight) * step
        assert ((w_deq - linear.weight.double()).abs() <= step / 2 + 1e-6).all(), \
            f"{fmt} [{n}, {k}] groups of {group_size}: stored codes x scales miss the weight by over half a step"
        x = torch.randn(pick(rng, 1, 3), pick(rng, 1, 7), k, generator=rng)
        got = layer(x)
        assert got.shape == (*x.shape[:-1], n) and got.dtype == torch.float32
        torch.testing.assert_close(got, F.linear(x, w_deq.float()), rtol=1e-5, atol=1e-5)
