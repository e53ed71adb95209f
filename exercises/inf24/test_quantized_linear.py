"""inf24 tests: int8 (per channel) and int4 (per group) projections: what they store and what they compute.

Oracles: the stored tensors decoded by the documented layout (int8 codes; int4 nibbles, element 2i in
the low nibble) times the fp16 scales, checked against the float weight within half a step; F.linear
with that decoded weight.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick

impl = Topic("inf24")


def decode(layer, fmt: str, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantized weight [N, K] float64, step [N, K]: the stored scale of each weight) from the buffers."""
    q, scales = layer.qweight, layer.scales.double()
    if fmt == "int8":
        return q.double() * scales[:, None], scales[:, None].expand(q.shape)
    codes = torch.stack((q % 16, q // 16), dim=-1).flatten(-2).double() - 8         # [N, K]
    step = scales.repeat_interleave(group_size, dim=1)
    return codes * step, step


def test_int8_scales_are_fp16_row_absmax_over_127(rng):
    n, k = pick(rng, 3, 60) | 1, pick(rng, 20, 200) | 1
    w = torch.randn(n, k, generator=rng) * torch.logspace(-2, 0, n)[:, None]       # fp16 scales stay normal
    codes, scales = call_keeping_inputs(impl.quantized_linear.quantize_int8, w)     # the oracle reads w after
    assert codes.dtype == torch.int8 and codes.shape == (n, k), f"codes: expected int8 [{n}, {k}], got {codes.dtype}"
    assert scales.dtype == torch.float16 and scales.shape == (n,), \
        f"scales: expected fp16 [{n}] (one per output channel), got {scales.dtype} {list(scales.shape)}"
    want = w.double().abs().amax(1) / 127
    off = ((scales.double() - want).abs() / want).max().item()
    assert off <= 2**-11, f"scale = fp16(max |w| of the row / 127); worst relative error {off:.1e}"
    assert ((codes.double() - w.double() / scales.double()[:, None]).abs() <= 0.5 + 1e-6).all(), \
        "codes must be round(w / stored fp16 scale)"


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantized_linear_stores_only_codes_and_fp16_scales(rng, fmt):
    group_size = 32
    n, k = pick(rng, 3, 70) | 1, group_size * pick(rng, 1, 8)
    layer = impl.quantized_linear.QuantizedLinear.from_linear(nn.Linear(k, n, bias=False), fmt, group_size)
    tensors = {name: t for name, t in list(layer.named_parameters()) + list(layer.named_buffers())}
    stored = sum(t.numel() * t.element_size() for t in tensors.values())
    want = n * k + 2 * n if fmt == "int8" else n * k // 2 + 2 * n * k // group_size
    assert stored == want, (f"{fmt} [{n}, {k}]: the layer stores {stored:,} bytes, expected {want:,} (codes + fp16 "
                            f"scales only): {[(name, t.dtype, list(t.shape)) for name, t in tensors.items()]}")


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_quantized_linear_computes_with_its_stored_weight(rng, fmt, dtype):
    group_size = [32, 64][pick(rng, 0, 1)]
    n, k = pick(rng, 3, 70) | 1, group_size * pick(rng, 1, 6)
    linear = nn.Linear(k, n, bias=False)
    with torch.no_grad():
        linear.weight.mul_(torch.logspace(-2, 0, k))                    # input columns of many sizes
    weight = linear.weight.detach().clone()
    layer = impl.quantized_linear.QuantizedLinear.from_linear(linear, fmt, group_size)
    assert torch.equal(linear.weight, weight), "from_linear changed the linear's weight in place: quantize a copy"
    w_deq, step = decode(layer, fmt, group_size)
    err = (w_deq - linear.weight.double()).abs() / step
    assert err.max() <= 0.5 + 1e-6, (
        f"{fmt}: decoding the stored codes "
        f"({'int8' if fmt == 'int8' else 'nibbles: element 2i low, 2i + 1 high, minus 8'}) "
        f"times the stored scales misses the weight by {err.max():.2f} steps (at most 0.5)")
    x = torch.randn(2, pick(rng, 1, 9), k, generator=rng).to(dtype)
    got = call_keeping_inputs(layer, x)
    want = F.linear(x, w_deq.to(dtype))
    assert got.dtype == dtype and got.shape == (*x.shape[:-1], n), \
        f"expected {dtype} {[*x.shape[:-1], n]}, got {got.dtype} {list(got.shape)}"
    torch.testing.assert_close(got, want, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-5,
                               msg=lambda m: f"{fmt} forward differs from F.linear with the stored weight: {m}")
