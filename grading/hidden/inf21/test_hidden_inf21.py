"""inf21 hidden tests: float64 and wide groups, K/V as slices of a cache, every conversion ratio of an
8-KV-head model, 1-byte caches and 128k contexts, and the decode kernel's edge lengths."""
import pytest
import torch

from exercises.inf21.test_convert import group_means
from exercises.inf21.test_gqa import Allocations, check_close, mha_reference
from lab.config import SHAPES
from lab.impl import Topic
from lab.testing import count_triton_launches, pick, random_config, random_lab_model
from lab.triton_interpreter import run_in_interpreter

impl = Topic("inf21")


def test_hidden_gqa_float64_wide_group_after_a_long_prefix(rng):
    """float64, 8 query heads per KV head, head_dim 128, a 5-17 token chunk after a 100-300 token prefix."""
    num_kv_heads, group, head_dim = pick(rng, 1, 2), 8, 128
    kv_len = pick(rng, 100, 300) | 1
    q_len = pick(rng, 5, 17)
    q = torch.randn(2, num_kv_heads * group, q_len, head_dim, generator=rng, dtype=torch.float64)
    k = torch.randn(2, num_kv_heads, kv_len, head_dim, generator=rng, dtype=torch.float64) * 1.5
    v = torch.randn(2, num_kv_heads, kv_len, head_dim, generator=rng, dtype=torch.float64)
    got = impl.gqa.gqa_attention(q, k, v)
    assert got.dtype == torch.float64, f"expected float64 out for float64 in, got {got.dtype}"
    check_close(got, mha_reference(q, k, v, True), 1e-10, f"float64, group 8, q_len {q_len}, kv_len {kv_len}")


def test_hidden_gqa_on_cache_slices_without_copies(rng):
    """q transposed from [B, T, H, D] (as the model makes it) and K/V slices of a longer cache buffer: the
    right result, and still no allocation near the size of repeated K/V."""
    batch, num_kv_heads, group, head_dim = 2, 2, 6, 64
    kv_len, q_len = pick(rng, 1200, 1800), pick(rng, 1, 3)
    q = torch.randn(batch, q_len, num_kv_heads * group, head_dim, generator=rng).transpose(1, 2)
    buffer = torch.randn(2, batch, num_kv_heads, kv_len + 50, head_dim, generator=rng)
    k, v = buffer[:, :, :, :kv_len].unbind(0)
    with Allocations() as seen:
        got = impl.gqa.gqa_attention(q, k, v)
    check_close(got, mha_reference(q, k, v, True), 1e-5, f"cache slices, kv_len {kv_len}, q_len {q_len}")
    k_bytes = k.numel() * k.element_size()
    assert seen.largest < group // 2 * k_bytes, \
        f"allocated {seen.largest:,} bytes ({seen.by}) with K of {k_bytes:,}: K/V were copied for the query heads"


@pytest.mark.parametrize("new_num_kv_heads", [4, 2, 1])
def test_hidden_convert_eight_kv_heads_to_every_divisor(rng, new_num_kv_heads):
    """A Llama-3-like 8-KV-head model (16 query heads) to 4, 2 and 1 KV heads: weights and equal-group logits."""
    config = random_config(rng, num_kv_heads=8, num_heads=16, head_dim=8, num_layers=2)
    model = random_lab_model(config, rng)
    r = 8 // new_num_kv_heads
    with torch.no_grad():
        for layer in model.layers:
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                w = proj.weight.view(new_num_kv_heads, r, config.head_dim, -1)
                w.copy_(w[:, :1].expand_as(w).clone())
        original = {n: p.clone() for n, p in model.state_dict().items()}
        ids = torch.randint(config.vocab_size, (2, pick(rng, 7, 25)), generator=rng)
        converted = impl.convert.convert_to_gqa(model, new_num_kv_heads)
        err = (converted(ids) - model(ids)).abs().max().item()
    assert err < 1e-4, f"8 -> {new_num_kv_heads} KV heads with equal groups: logits changed by {err:.2e}"
    for name, t in converted.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            assert torch.allclose(t.double(), group_means(original[name], 8, new_num_kv_heads), atol=1e-6), name


def test_hidden_kv_bytes_of_one_byte_caches_and_long_contexts():
    """int8 / float8 caches (1 byte a value) and Llama-3-8B at 128k tokens x 64 sequences (past 2^31)."""
    config = SHAPES["llama-3-8b"]
    for dtype in (torch.int8, torch.float8_e4m3fn):
        got = impl.kv_bytes.kv_bytes_per_token(config, dtype)
        assert got == 64 * 1024, f"Llama-3-8B with a 1-byte {dtype} cache: expected 65,536 bytes per token, got {got!r}"
    got = impl.kv_bytes.kv_cache_bytes(config, 64, 131072)
    assert got == 64 * 131072 * 131072, f"64 x 128k tokens of Llama-3-8B in bf16: expected 1 TiB, got {got!r}"
    mqa = impl.kv_bytes.kv_bytes_per_token(SHAPES["smollm2-135m"].with_(num_kv_heads=1), torch.float32)
    assert mqa == 2 * 30 * 64 * 4, f"SmolLM2 as MQA in float32: expected 15,360 bytes per token, got {mqa!r}"


def check_hidden_decode_kernel_edges(seed: int) -> None:
    """kv_len of 1, of exactly one tile, and just past a tile; 8 query heads per KV head; more splits than tiles."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for kv_len in (1, 16, 17, 64, 65):
        q = torch.randn(2, 16, 1, 32, generator=gen).to(device)
        k, v = (torch.randn(2, 2, kv_len, 32, generator=gen).to(device) for _ in range(2))
        with count_triton_launches() as launches:
            got = impl.gqa_decode.gqa_decode_triton(q, k, v, num_splits=pick(gen, 1, 9))
        assert 1 <= launches.count <= 2, f"kv_len {kv_len}: expected Triton launches, saw {launches.kernels}"
        check_close(got.cpu(), mha_reference(q.cpu(), k.cpu(), v.cpu(), True), 1e-5, f"decode kernel, kv_len {kv_len}")


def test_hidden_decode_kernel_edge_lengths(seed):
    if torch.cuda.is_available():
        check_hidden_decode_kernel_edges(seed)
    else:
        run_in_interpreter(__file__, "check_hidden_decode_kernel_edges", seed)
