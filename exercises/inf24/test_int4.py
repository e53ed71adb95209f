"""inf24 tests: packing 4-bit codes two a byte, and group-wise symmetric int4 quantization.

Oracles: the byte layout written out bit by bit (element 2i in the low nibble of byte i); the scales and
codes by their definition in float64; the round-trip bound of half a (stored, fp16) scale step.
"""
import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, pick, raises

impl = Topic("inf24")


def test_pack_int4_puts_the_even_element_in_the_low_nibble(rng):
    rows, k = pick(rng, 1, 9) | 1, 2 * pick(rng, 1, 40)
    values = torch.randint(0, 16, (rows, k), generator=rng, dtype=torch.uint8)
    packed = call_keeping_inputs(impl.int4.pack_int4, values)
    assert packed.dtype == torch.uint8 and packed.shape == (rows, k // 2), \
        f"expected uint8 [{rows}, {k // 2}], got {packed.dtype} {list(packed.shape)}"
    want = [[int(r[2 * i]) + 16 * int(r[2 * i + 1]) for i in range(k // 2)] for r in values]
    assert packed.tolist() == want, (
        f"row 0: values {values[0, :4].tolist()}... should pack to bytes {want[0][:2]}... (element 2i in the low "
        f"4 bits, 2i + 1 in the high 4 bits), got {packed[0, :2].tolist()}...")
    batched = torch.randint(0, 16, (2, 3, 6), generator=rng, dtype=torch.uint8)
    assert torch.equal(impl.int4.pack_int4(batched)[1, 2], impl.int4.pack_int4(batched[1, 2])), \
        "pack_int4 works on the last dimension of any shape"


def test_unpack_int4_inverts_pack(rng):
    packed = torch.randint(0, 256, (pick(rng, 1, 9), pick(rng, 1, 40)), generator=rng, dtype=torch.uint8)
    values = call_keeping_inputs(impl.int4.unpack_int4, packed)
    assert values.dtype == torch.uint8 and values.shape == (packed.shape[0], 2 * packed.shape[1]), \
        f"expected uint8 {[packed.shape[0], 2 * packed.shape[1]]}, got {values.dtype} {list(values.shape)}"
    assert torch.equal(values[:, 0::2], packed % 16) and torch.equal(values[:, 1::2], packed // 16), \
        "unpack: byte i holds element 2i in its low nibble and element 2i + 1 in its high nibble"
    assert torch.equal(impl.int4.pack_int4(values), packed), "pack_int4(unpack_int4(b)) must give b back"


def test_pack_int4_rejects_what_does_not_fit():
    assert impl.int4.pack_int4(torch.tensor([1, 15], dtype=torch.uint8)).tolist() == [241]
    with raises(ValueError, because="pack_int4 of 3 values: two 4-bit values per byte need an even count"):
        impl.int4.pack_int4(torch.tensor([1, 2, 3], dtype=torch.uint8))          # odd length
    with raises(ValueError, because="pack_int4 of the value 16: it needs 5 bits"):
        impl.int4.pack_int4(torch.tensor([16, 0], dtype=torch.uint8))            # 16 needs 5 bits


@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_scales_and_codes_are_groupwise_and_symmetric(rng, group_size):
    n, k = pick(rng, 3, 40) | 1, group_size * pick(rng, 2, 6)
    w = torch.randn(n, k, generator=rng)
    w *= torch.logspace(-3, 0, k // group_size).repeat_interleave(group_size)   # groups of many sizes along K
    w[0, :group_size] = 0                                                          # a group of zeros
    packed, scales = call_keeping_inputs(impl.int4.quantize_int4, w, group_size)   # the oracle reads w after
    assert packed.dtype == torch.uint8 and packed.shape == (n, k // 2), \
        f"codes: expected uint8 [{n}, {k // 2}], got {packed.dtype} {list(packed.shape)}"
    assert scales.dtype == torch.float16 and scales.shape == (n, k // group_size), \
        f"scales: one fp16 per group of {group_size} along K: expected [{n}, {k // group_size}], " \
        f"got {scales.dtype} {list(scales.shape)}"
    groups = w.double().reshape(n, -1, group_size)
    amax = groups.abs().amax(-1)
    want_scale = torch.where(amax > 0, (amax / 7).clamp(min=2**-14), torch.ones_like(amax))
    off = ((scales.double() - want_scale).abs() / want_scale).max().item()
    assert off <= 2**-11, (f"each group's scale must be max |w| of the group / 7, rounded to fp16 (1.0 for a group "
                           f"of zeros); the worst is {off:.1e} off, more than fp16's half step (4.9e-4)")
    codes = impl.int4.unpack_int4(packed).double().reshape(n, -1, group_size) - 8
    scaled = groups / scales.double()[..., None]
    assert ((codes - scaled).abs() <= 0.5 + 1e-6).all(), \
        "codes must be round(w / stored fp16 scale), stored as code + 8 in 0..15"
    back = call_keeping_inputs(impl.int4.dequantize_int4, packed, scales, group_size)
    err = (back.double() - w.double()).reshape(n, -1, group_size).abs() / scales.double()[..., None]
    assert back.shape == w.shape and err.max() <= 0.5 + 1e-6, \
        f"dequantize(quantize(w)) is off by {err.max():.2f} steps of its group's stored scale (at most 0.5)"


def test_int4_tiny_groups_keep_a_normal_fp16_scale(rng):
    group_size = 2 * pick(rng, 4, 16)
    n, k = pick(rng, 3, 9) | 1, group_size * 6
    w = torch.randn(n, k, generator=rng)
    # group sizes: 0, underflowing fp16 (max|w| / 7 < 2^-25), subnormal, just under and over 7 * 2^-14, normal
    sizes = torch.tensor([0.0, 1e-9, 2e-6, 4e-4, 5e-4, 1.0], dtype=torch.float64)
    w = (w.double() / w.double().reshape(n, 6, group_size).abs().amax(-1).repeat_interleave(group_size, 1)
         * sizes.repeat_interleave(group_size)).float()
    groups = w.double().reshape(n, 6, group_size)             # the oracle reads w before quantize_int4 runs
    amax = groups.abs().amax(-1)
    want_scale = torch.where(amax > 0, (amax / 7).clamp(min=2**-14), torch.ones_like(amax))
    packed, scales = impl.int4.quantize_int4(w, group_size)
    back = impl.int4.dequantize_int4(packed, scales, group_size).double()
    assert torch.isfinite(scales).all() and (scales > 0).all() and torch.isfinite(back).all(), (
        f"scales per size {sizes.tolist()}: {scales[0].tolist()}: a scale of 0 (max |w| / 7 underflows fp16) "
        "makes the codes NaN; the scale is max(max |w| / 7, 2^-14), 1.0 for a group of zeros")
    off = ((scales.double() - want_scale).abs() / want_scale).max().item()
    assert off <= 2**-11, (f"scales per group size {sizes.tolist()}: expected {want_scale[0].tolist()} (max(max |w| / "
                           f"7, 2^-14) in fp16, 1.0 for zeros), got {scales[0].tolist()}")
    assert (back.reshape(n, 6, group_size)[:, 0] == 0).all(), "a group of zeros must dequantize to zeros"
    err = (back - w.double()).reshape(n, 6, group_size).abs() / scales.double()[..., None]
    assert err.max() <= 0.5 + 1e-6, (f"dequantize(quantize(w)) is off by {err.max():.2f} steps of its group's scale "
                                     f"in the group of size {sizes[err.amax((0, 2)).argmax()].item():g} (at most 0.5)")


def test_int4_rejects_groups_that_do_not_tile_k():
    impl.int4.quantize_int4(torch.randn(3, 64), 32)
    with raises(ValueError, because="quantize_int4 of K=48 in groups of 32: the groups do not tile K"):
        impl.int4.quantize_int4(torch.randn(3, 48), 32)
