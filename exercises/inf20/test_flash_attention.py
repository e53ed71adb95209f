"""inf20 tests: the FlashAttention forward kernel in Triton and its PyTorch reference; speed and memory on a GPU.

Oracle: float64 attention on the same (rounded) half-precision inputs (test_online_softmax.attention_float64).
On a CPU the kernel runs in the Triton interpreter (lab/triton_interpreter.py) on small odd shapes; on a GPU
natively on larger ones. Every kernel check also proves that a Triton kernel ran (lab.testing.count_triton_launches).
"""
import pytest
import torch
import torch.nn.functional as F

from exercises.inf20.test_online_softmax import assert_attention_close, attention_float64, random_qkv
from lab.impl import Topic
from lab.testing import count_triton_launches, naive_attention, pick
from lab.timing import compare
from lab.triton_interpreter import run_in_interpreter

impl = Topic("inf20")

# Speed thresholds (docs/thresholds.md, inf20), causal prefill, B 1, 32 heads, head_dim 128, bf16, seq 4096.
# Measured on an H200 (reference/measured-here.md): SDPA's flash backend is 9.3x naive attention there
# (0.57 vs 5.26 ms), so >= 5x naive leaves room for a kernel at ~55% of SDPA flash. Measured on an H100,
# 2026-12-06 (one process, 3 measurements): the reference 19.1x naive and 1.32x SDPA flash; the naive
# materializing version 0.46x and 0.03x. So the kernel must keep up with SDPA flash (curriculum 0.8x).
# 1.0x flipped nothing but left too little margin: on an H100 (session 10, two calls, 20 measurements in six
# processes) the reference measured 1.08-1.31x SDPA flash, varying by process with the autotuner's pick (each
# of 64x64/4 warps and 128x64/8 warps ran at 1.5x by do_bench); 0.85x leaves its worst 27% over.
NAIVE_SPEEDUP = 5.0
SDPA_FLASH_RATIO = 0.85
SPEED_SHAPE = (1, 32, 4096, 128)                      # batch, num_heads, seq_len, head_dim

# Absolute tolerances on out for |v| < ~4.5: fp16 and bf16 round p and out once each (2^-11 and 2^-8
# relative); a missed rescale or a wrong diagonal costs ~0.1-1. lse is float32 math on exact products.
OUT_TOL = {torch.float16: 2**-9 * 4, torch.bfloat16: 2**-7 * 4}
LSE_TOL = 2e-4


def kernel_cases(gen, big: bool) -> list[tuple]:
    """(batch, num_heads, q_len, kv_len, head_dim, causal, dtype, strided) with lengths off the block sizes."""
    n = pick(gen, 17, 45)
    cases = [(1, 2, n, n + pick(gen, 1, 30), 64, True, torch.float16, False),        # prefill after a prefix
             (2, 1, pick(gen, 5, 40), pick(gen, 20, 70), 64, False, torch.bfloat16, True),
             (1, 1, n, n, 128, True, torch.bfloat16, True),                           # square causal, head 128
             (1, 2, 1, pick(gen, 10, 60), 64, True, torch.float16, False)]            # one query (decode)
    if big:
        n = pick(gen, 700, 1500)
        cases += [(2, 3, n, n, 128, True, torch.bfloat16, True),
                  (1, 5, pick(gen, 300, 600), pick(gen, 900, 1300), 64, False, torch.float16, False),
                  (3, 2, pick(gen, 200, 400), pick(gen, 1000, 1200), 128, True, torch.float16, True),
                  (1, 4, n, n, 64, True, torch.bfloat16, False)]
    return cases


def check_flash_kernel(seed: int) -> None:
    """flash_attention against float64 attention. Module level: lab.triton_interpreter calls it by name."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for batch, num_heads, q_len, kv_len, head_dim, causal, dtype, strided in kernel_cases(gen, device == "cuda"):
        where = (f"batch {batch}, heads {num_heads}, q_len {q_len}, kv_len {kv_len}, head_dim {head_dim}, "
                 f"{'causal' if causal else 'full'}, {dtype}")
        q, k, v = random_qkv(gen, batch, num_heads, q_len, kv_len, head_dim, dtype=dtype, device=device)
        if strided:            # [batch, len, heads, head_dim] memory seen as [batch, heads, len, head_dim]
            q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        want = attention_float64(q, k, v, causal)
        inputs = [t.clone() for t in (q, k, v)]
        with count_triton_launches() as launches:
            out, lse = impl.flash_attention.flash_attention(q, k, v, causal=causal)
        assert launches.count >= 1, f"{where}: flash_attention launched no Triton kernel; it must run yours"
        assert all(torch.equal(a, b) for a, b in zip(inputs, (q, k, v))), "flash_attention must not modify q, k, v"
        assert out.dtype == dtype and out.device.type == device, \
            f"{where}: out must be {dtype} on {device}, got {out.dtype} on {out.device}"
        assert_attention_close((out, lse), want, OUT_TOL[dtype], LSE_TOL, where)
    assert_rejects_bad_input(impl.flash_attention.flash_attention, "flash_attention")


def test_flash_kernel_matches_float64(seed):
    if torch.cuda.is_available():
        check_flash_kernel(seed)
    else:
        run_in_interpreter(__file__, "check_flash_kernel", seed)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_flash_reference_matches_float64(rng, dtype, causal):
    q_len = pick(rng, 3, 70)
    kv_len = q_len + pick(rng, 0, 50)
    head_dim = (64, 128)[pick(rng, 0, 1)]
    q, k, v = random_qkv(rng, pick(rng, 1, 2), pick(rng, 1, 3), q_len, kv_len, head_dim, dtype=dtype)
    want = attention_float64(q, k, v, causal)
    out, lse = impl.flash_attention.flash_attention_reference(q, k, v, causal=causal)
    assert out.dtype == dtype, f"out must be in q's dtype {dtype}, got {out.dtype}"
    assert_attention_close((out, lse), want, OUT_TOL[dtype], LSE_TOL,
                           f"flash_attention_reference, q_len {q_len}, kv_len {kv_len}, head_dim {head_dim}")


def bad_flash_inputs() -> list[tuple]:
    q, k = torch.zeros(1, 2, 5, 64, dtype=torch.float16), torch.zeros(1, 2, 7, 64, dtype=torch.float16)
    return [((q.float(), k.float(), k.float()), {}, "float32: the kernel takes fp16 or bf16"),
            ((q[..., :48], k[..., :48], k[..., :48]), {}, "head_dim 48"),
            ((q, k.bfloat16(), k), {}, "mixed dtypes"),
            ((q, torch.zeros(1, 1, 7, 64, dtype=torch.float16), torch.zeros(1, 1, 7, 64, dtype=torch.float16)), {},
             "num_heads differ"),
            ((k, q, q), {"causal": True}, "causal with q_len > kv_len")]


def assert_rejects_bad_input(fn, name: str) -> None:
    for args, kwargs, what in bad_flash_inputs():
        with pytest.raises(ValueError):
            fn(*args, **kwargs)
            pytest.fail(f"{name} accepted bad input ({what}); raise ValueError")


def test_flash_reference_rejects_bad_input():
    """(flash_attention's own checks run with the kernel's, in check_flash_kernel.)"""
    ref = impl.flash_attention.flash_attention_reference
    q = torch.zeros(1, 2, 5, 64, dtype=torch.float16)
    assert ref(q, q, q, causal=True)[0].shape == q.shape
    assert_rejects_bad_input(ref, "flash_attention_reference")


# ------------------------------------------------------------------------------------------------ GPU
def causal_mask(seq_len: int, device) -> torch.Tensor:
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None]


def make_speed_inputs(gen, shape=SPEED_SHAPE, dtype=torch.bfloat16):
    batch, num_heads, seq_len, head_dim = shape
    return tuple(torch.randn(batch, num_heads, seq_len, head_dim, generator=gen, device="cuda", dtype=dtype)
                 for _ in range(3))


def check_timed_output(out, args) -> None:
    """The timed kernel's output against SDPA (math on float32) on the same inputs."""
    q, k, v = args
    out = out[0] if isinstance(out, tuple) else out
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    err = (out.float() - want).abs().max().item()
    assert err <= 2**-7 * 8, f"the timed flash_attention output is off by {err:.3f}: it must compute what is timed"


@pytest.mark.gpu
def test_flash_kernel_peak_memory_has_no_n_by_n_matrix():
    """At 16k tokens one head's bf16 score matrix is 512 MiB; the kernel may allocate out, lse and little else."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, num_heads, seq_len, head_dim = 1, 8, 16384, 128
    q, k, v = make_speed_inputs(gen, (batch, num_heads, seq_len, head_dim))
    impl.flash_attention.flash_attention(q, k, v, causal=True)        # warm-up: compile and autotune first
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out, lse = impl.flash_attention.flash_attention(q, k, v, causal=True)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    scores = seq_len * seq_len * 2
    allowed = out.numel() * out.element_size() + lse.numel() * 4 + scores // 16
    assert extra <= allowed, (
        f"flash_attention allocated {extra / 2**20:.0f} MiB at its peak for {seq_len} tokens, {num_heads} heads; "
        f"allowed {allowed / 2**20:.0f} MiB (out, lse and 1/16 of one head's {scores / 2**20:.0f} MiB score "
        "matrix): keep the scores in the kernel's tiles")


@pytest.mark.gpu
@pytest.mark.speed
def test_flash_kernel_beats_naive_attention_at_4k(benchmark, record_property):
    gen = torch.Generator(device="cuda").manual_seed(0)
    mask = causal_mask(SPEED_SHAPE[2], "cuda")
    compare(lambda q, k, v: impl.flash_attention.flash_attention(q, k, v, causal=True),
            lambda q, k, v: naive_attention(q, k, v, mask), threshold=NAIVE_SPEEDUP,
            make_inputs=lambda: make_speed_inputs(gen), check=check_timed_output,
            what=f"FlashAttention kernel vs naive attention, causal, B,H,N,D = {SPEED_SHAPE}, bf16",
            benchmark=benchmark, record=record_property).assert_passes()


@pytest.mark.gpu
@pytest.mark.speed
def test_flash_kernel_keeps_up_with_sdpa_flash(benchmark, record_property):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gen = torch.Generator(device="cuda").manual_seed(0)

    def sdpa_flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    compare(lambda q, k, v: impl.flash_attention.flash_attention(q, k, v, causal=True), sdpa_flash,
            threshold=SDPA_FLASH_RATIO, make_inputs=lambda: make_speed_inputs(gen), check=check_timed_output,
            what=f"FlashAttention kernel vs torch SDPA flash backend, causal, B,H,N,D = {SPEED_SHAPE}, bf16",
            benchmark=benchmark, record=record_property).assert_passes()

