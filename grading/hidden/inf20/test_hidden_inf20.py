"""inf20 hidden tests: one query against a long cache, single-key rows, head dims 16 and 32, block sizes of 1
and past the length, lse of peaked rows, the kernel on ragged shapes in the interpreter, traffic of one tile."""
import pytest
import torch

from exercises.inf20.test_flash_attention import OUT_TOL, LSE_TOL
from exercises.inf20.test_online_softmax import assert_attention_close, attention_float64, random_qkv
from exercises.inf20.test_traffic import flash_bytes_from_the_mask, naive_bytes_on_meta
from lab.impl import Topic
from lab.testing import count_triton_launches, pick
from lab.triton_interpreter import run_in_interpreter

impl = Topic("inf20")


@pytest.mark.parametrize("block_size", [1, 1000])
def test_hidden_tiled_attention_block_of_one_and_past_the_length(rng, block_size):
    """A block of 1 (one key per step: every step may raise the max) and one larger than both lengths."""
    q_len = pick(rng, 5, 17)
    q, k, v = random_qkv(rng, 2, 1, q_len, q_len + pick(rng, 1, 9), 8, scale=3.0)
    for causal in (False, True):
        got = impl.online_softmax.tiled_attention(q, k, v, causal=causal, block_size=block_size)
        assert_attention_close(got, attention_float64(q, k, v, causal), 1e-4, 1e-4,
                               f"block_size {block_size}, causal {causal}")


def test_hidden_tiled_attention_one_query_against_a_long_cache(rng):
    """Decode: q_len 1 against hundreds of keys, causal (the query sees them all) and not."""
    kv_len = pick(rng, 300, 500)
    q, k, v = random_qkv(rng, 1, 3, 1, kv_len, 64)
    for causal in (False, True):
        got = impl.online_softmax.tiled_attention(q, k, v, causal=causal, block_size=32)
        assert_attention_close(got, attention_float64(q, k, v, causal), 1e-4, 1e-4, f"q_len 1, kv_len {kv_len}")


def test_hidden_tiled_attention_first_row_sees_one_key(rng):
    """Square causal: row 0 sees only key 0 (out = v_0, lse = its one scaled score), with an extreme score."""
    n = pick(rng, 20, 40)
    q, k, v = random_qkv(rng, 1, 2, n, n, 16)
    q[:, :, 0] *= 40
    out, lse = impl.online_softmax.tiled_attention(q, k, v, causal=True, block_size=16)
    assert torch.allclose(out[:, :, 0].double(), v[:, :, 0].double(), atol=1e-6), "row 0 must equal v[0] exactly"
    assert_attention_close((out, lse), attention_float64(q, k, v, True), 1e-4, 1e-3, "row 0 sees one key")


def check_hidden_flash_kernel(seed: int) -> None:
    """Head dims 16 and 32, one key (kv_len 1), a q_len of 1, lengths of one tile +- 1."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = [(1, 2, 1, 1, 16, True, torch.float16), (1, 1, 15, 17, 32, True, torch.bfloat16),
             (2, 1, 17, 16, 32, False, torch.float16), (1, 1, pick(gen, 3, 30), pick(gen, 33, 65), 16, False,
                                                          torch.bfloat16)]
    for batch, heads, q_len, kv_len, head_dim, causal, dtype in cases:
        q, k, v = random_qkv(gen, batch, heads, q_len, kv_len, head_dim, dtype=dtype, device=device)
        want = attention_float64(q, k, v, causal)
        with count_triton_launches() as launches:
            got = impl.flash_attention.flash_attention(q, k, v, causal=causal)
        assert launches.count >= 1, "flash_attention launched no Triton kernel"
        assert_attention_close(got, want, OUT_TOL[dtype], LSE_TOL,
                               f"q_len {q_len}, kv_len {kv_len}, head_dim {head_dim}, causal {causal}, {dtype}")


def test_hidden_flash_kernel_small_head_dims_and_single_keys(seed):
    if torch.cuda.is_available():
        check_hidden_flash_kernel(seed)
    else:
        run_in_interpreter(__file__, "check_hidden_flash_kernel", seed)


@pytest.mark.gpu
def test_hidden_flash_kernel_long_causal_prefill_after_a_prefix(seed):
    """On a GPU: 3,000 new queries after a 5,000-token prefix, head_dim 128, bf16, rows checked in float64."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = random_qkv(gen, 1, 4, 3000 + pick(gen, 0, 99), 8000 + pick(gen, 0, 99), 128,
                         dtype=torch.bfloat16, device="cuda")
    out, lse = impl.flash_attention.flash_attention(q, k, v, causal=True)
    rows = torch.randperm(q.shape[2], generator=gen)[:64].sort().values
    offset = k.shape[2] - q.shape[2]
    for r in rows.tolist():           # each row on its own: its visible keys are 0 .. r + offset
        want_out, want_lse = attention_float64(q[:, :, r:r + 1], k[:, :, :r + offset + 1], v[:, :, :r + offset + 1],
                                               False)
        assert_attention_close((out[:, :, r:r + 1], lse[:, :, r:r + 1]), (want_out, want_lse),
                               OUT_TOL[torch.bfloat16], LSE_TOL, f"row {r} of {q.shape[2]} after a prefix of {offset}")


def test_hidden_traffic_of_one_tile_and_one_token(rng):
    """One query tile covering everything (block_m >= q_len), a one-token decode, and a causal square."""
    d = pick(rng, 16, 128)
    for args in [(1, 1, 37, 37, d, 64, True), (3, 8, 1, 4097, d, 128, True), (2, 4, 4096, 4096, 128, 128, True),
                 (1, 2, 100, 50, d, 32, False)]:
        got = impl.traffic.flash_attention_bytes(*args[:6], causal=args[6], dtype_bytes=2)
        assert got == flash_bytes_from_the_mask(*args, 2), f"flash_attention_bytes{args}: got {got}"
    for sizes in [(1, 1, 1, 4097, 64), (4, 32, 4096, 4096, 128)]:
        assert impl.traffic.naive_attention_bytes(*sizes) == naive_bytes_on_meta(*sizes, 2), \
            f"naive_attention_bytes{sizes}"
