"""inf14 tests: the W8A8 matmul, exact in int32, in PyTorch and as a Triton kernel; its speed against bf16.

Oracles: int64 sums of the same codes (exact), float64 products of the float inputs with the rounding
bound that per-token and per-channel scales guarantee, and the PyTorch path for the kernel.
"""
import pytest
import torch
import torch.nn.functional as F

from lab.impl import Topic
from lab.testing import call_keeping_inputs, count_triton_launches, kernel_check, pick, raises
from lab.timing import compare

impl = Topic("inf14")

# Speed threshold (see docs/thresholds.md, inf14): the Triton W8A8 GEMM at M = 8192 on Llama-3-8B's
# MLP shape (K 4096, N 14336), against cuBLAS bf16 through F.linear. int8 tensor cores run at twice
# the bf16 rate on an H200; torch._int_mm reaches only 0.16x bf16 there, so it cannot pass.
# The tiled reference kernel ran at 1.22-1.28x cuBLAS bf16 on the H200 (5 measurements) and 1.20-1.31x on
# an H100, so the threshold was 1.0x ("int8 must beat bf16"). With the reference's persistent TMA kernel
# (M >= 512 on Hopper), three processes x four measurements on an H100 (2026-12-06): 1.32-1.44x, no flip;
# dequantize-then-bf16 0.43x. 1.1x left the reference 20% over its worst there, but session 10 measured
# 1.26-1.42x (10 measurements, three processes; do_bench 1.75x: the test's synchronized call also counts the
# call's ~108 us of host work, against cuBLAS's ~43 us, docs/perf/kernel_sweep.py): 1.05x left 20%. Session 12,
# another H100: 1.25-1.38x, so 1.05x left the worst 19% over; over the 20 measurements, 1.03x left 21%. Session
# 13, a third H100: 1.15-1.36x (one reading of 1.15, the other nine 1.21-1.36), 12% over 1.03: over the 30
# measurements the rule leaves 0.96x, so the test asks that the kernel keep up with cuBLAS bf16 in the lab's
# synchronized timing (it is 1.75x by do_bench); dequantize-then-bf16 reads 0.44x.
W8A8_SPEEDUP = 0.96
W8A8_SHAPE = (8192, 4096, 14336)           # M, K, N


def random_codes(gen, *shape) -> torch.Tensor:
    return torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)


def test_int8_matmul_accumulates_exactly_in_int32(rng):
    """Sums past 2^24 (where float32 rounds) and far past 65,504 (where float16 overflows) must be exact."""
    m, n, k = pick(rng, 2, 9), pick(rng, 3, 11) | 1, pick(rng, 1100, 2100) | 1
    xq, wq = random_codes(rng, m, k), random_codes(rng, n, k)
    xq[0], wq[0], wq[1] = 127, 127, -127                 # full-scale rows: sums of +-127^2 * K ~ 2.4e7
    wq[2] = torch.where(torch.arange(k) % 2 == 0, 127, -127).to(torch.int8)     # odd partial sums
    got = call_keeping_inputs(impl.int8_matmul.int8_matmul, xq, wq)
    want = xq.long() @ wq.long().t()
    assert got.dtype == torch.int32 and got.shape == (m, n), \
        f"expected int32 [{m}, {n}], got {got.dtype} {list(got.shape)}"
    wrong = (got.long() != want)
    assert not wrong.any(), (
        f"{int(wrong.sum())} of {m * n} sums differ from the exact integer result (e.g. {int(got.long()[wrong][0])} "
        f"instead of {int(want[wrong][0])}; K = {k}): accumulate in int32 (torch._int_mm), not in float32 "
        "(exact only up to 2^24) or float16 (overflows at 65,504)")


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_w8a8_epilogue_applies_token_and_channel_scales(rng, out_dtype):
    m, n, k = pick(rng, 1, 33), pick(rng, 3, 41) | 1, pick(rng, 16, 300) | 1
    xq, wq = random_codes(rng, m, k), random_codes(rng, n, k)
    x_scale = torch.rand(m, 1, generator=rng) * 0.1 + 1e-3
    w_scale = torch.rand(n, generator=rng) * 0.01 + 1e-4
    got = call_keeping_inputs(impl.int8_matmul.w8a8_matmul, xq, x_scale, wq, w_scale, out_dtype=out_dtype)
    want = (xq.double() @ wq.double().t()) * x_scale.double() * w_scale.double()
    assert got.dtype == out_dtype and got.shape == (m, n), \
        f"expected {out_dtype} [{m}, {n}], got {got.dtype} {list(got.shape)}"
    rtol = 1e-6 if out_dtype == torch.float32 else 2**-8            # one rounding to out_dtype
    err = ((got.double() - want).abs() / (want.abs() + 1e-12)).max().item()
    assert err <= rtol, (f"relative error {err:.2e} > {rtol:.0e}: out[m, n] must be the int32 sum times "
                         "x_scale[m] times w_scale[n], computed in float32 and cast once to out_dtype")


def w8a8_error_bound(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The most |x @ w.T - dequantized product| can be per element, [M, N], with per-token scales
    sx = absmax/127 and per-channel sw: each x errs <= sx/2 and each w <= sw/2, so
    |xw - x'w'| <= |x| sw/2 + |w| sx/2 + sx sw/4 summed over k (plus float32 rounding slack)."""
    x, w = x.double(), w.double()
    sx = x.abs().amax(1, keepdim=True) / 127                           # [M, 1]
    sw = w.abs().amax(1) / 127                                         # [N]
    k = x.shape[1]
    bound = x.abs().sum(1, keepdim=True) * sw / 2 + sx / 2 * w.abs().sum(1) + k * sx * sw / 4
    return bound * 1.001 + 1e-6 * (x.abs() @ w.abs().t())


def test_w8a8_matches_the_float_matmul_within_its_rounding_bound(rng):
    m, n, k = pick(rng, 2, 40), pick(rng, 20, 60) | 1, pick(rng, 50, 400) | 1
    x = torch.randn(m, k, generator=rng) * torch.logspace(-2, 1, m)[:, None]   # tokens of many sizes
    w = torch.randn(n, k, generator=rng) * torch.logspace(-3, 0, n)[torch.randperm(n, generator=rng)][:, None]
    xq, x_scale = call_keeping_inputs(impl.quantize.quantize_per_token, x)          # the oracle reads x and w after
    wq, w_scale = call_keeping_inputs(impl.quantize.quantize_per_channel, w)
    got = impl.int8_matmul.w8a8_matmul(xq, x_scale, wq, w_scale, out_dtype=torch.float32)
    err = (got.double() - x.double() @ w.double().t()).abs()
    over = err / w8a8_error_bound(x, w)
    assert over.max() <= 1, (f"W8A8 error is {over.max():.1f}x the bound that per-token and per-channel "
                             f"scales guarantee (worst at token/channel {divmod(int(over.argmax()), n)}): "
                             "check both quantizers and the epilogue")


def test_w8a8_rejects_mismatched_shapes():
    xq, wq = torch.zeros(3, 8, dtype=torch.int8), torch.zeros(5, 8, dtype=torch.int8)
    assert impl.int8_matmul.w8a8_matmul(xq, torch.ones(3, 1), wq, torch.ones(5)).shape == (3, 5)
    with raises(ValueError, because="w8a8_matmul of xq [3, 8] and wq [5, 7]: K differs (8 vs 7)"):
        impl.int8_matmul.w8a8_matmul(xq, torch.ones(3, 1), torch.zeros(5, 7, dtype=torch.int8), torch.ones(5))
    with raises(ValueError, because="w8a8_matmul of float32 activations: xq must be int8 codes"):
        impl.int8_matmul.w8a8_matmul(xq.float(), torch.ones(3, 1), wq, torch.ones(5))


def check_w8a8_kernel(seed: int) -> None:
    """The Triton kernel against the PyTorch path. Run in the Triton interpreter on a CPU (small odd
    shapes), natively on a GPU (larger ones). Module level: lab.triton_interpreter calls it by name."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    big = device == "cuda"
    cases = [(pick(gen, 1, 40), pick(gen, 17, 70) | 1, pick(gen, 33, 300) | 1),     # odd: tails in M, N, K
             (pick(gen, 17, 30), 19, 1100),                                         # long K at full scale
             (pick(gen, 1, 40) | 1, 8 * pick(gen, 3, 9), 16 * pick(gen, 3, 9))]     # 16-byte rows (TMA-able)
    if big:
        cases += [(pick(gen, 300, 700), pick(gen, 500, 900) | 1, pick(gen, 1000, 3000)),
                  (pick(gen, 513, 1100) | 1, 8 * pick(gen, 60, 200), 16 * pick(gen, 60, 200))]
    for i, (m, n, k) in enumerate(cases):
        xq, wq = random_codes(gen, m, k), random_codes(gen, n, k)
        if i == 1:
            xq[:], wq[: n // 2] = 127, -127       # |sums| of 1.8e7: float16 overflows, int32 does not
        x_scale, w_scale = torch.rand(m, 1, generator=gen) + 0.01, torch.rand(n, generator=gen) / 100 + 1e-4
        args = [t.to(device) for t in (xq, x_scale, wq, w_scale)]
        for out_dtype in (torch.float32, torch.bfloat16):
            with count_triton_launches() as launches:
                got = impl.int8_matmul.w8a8_matmul_triton(*args, out_dtype=out_dtype)
            assert launches.count >= 1, (
                f"w8a8_matmul_triton on [{m}, {k}] x [{n}, {k}] launched no Triton kernel: it must compute the "
                "product in your @triton.jit kernel (w8a8_kernel), not in PyTorch")
            want = (xq.double() @ wq.double().t()) * x_scale.double() * w_scale.double()
            assert got.dtype == out_dtype and got.shape == (m, n), \
                f"[{m}, {k}] x [{n}, {k}]: expected {out_dtype} [{m}, {n}], got {got.dtype} {list(got.shape)}"
            err = ((got.cpu().double() - want).abs() / (want.abs() + 1e-9)).max().item()
            # bf16: 2^-6 allows two roundings (2^-8 each), or the Triton interpreter's truncation of float32
            # to bf16 (2^-7); float16 overflow gives inf and a wrong tile mask errors of order 1.
            assert err <= (1e-6 if out_dtype == torch.float32 else 2**-6), (
                f"w8a8_matmul_triton on [{m}, {k}] x [{n}, {k}] ({out_dtype}): relative error {err:.2e}. "
                + ("Values of 127 with K = 1100 overflow a float16 accumulator: accumulate with "
                   "tl.dot(x, w, acc, out_dtype=tl.int32)" if i == 1 else
                   "check the masks on the K tail and the M/N edges, and the epilogue scales"))


def test_w8a8_triton_kernel_matches_the_pytorch_path(seed):
    kernel_check(check_w8a8_kernel, seed)       # on a CPU: in the Triton interpreter's child process


def w8a8_speed_inputs(m: int, k: int, n: int, device: str):
    """The speed test's operands: (wq, w_scale, w_bf16, make_inputs), make_inputs() giving fresh (xq, x_scale,
    x in bf16) each call. docs/perf/w8a8_gap.py times the same ones."""
    gen = torch.Generator(device=device).manual_seed(0)
    wq = torch.randint(-127, 128, (n, k), generator=gen, device=device, dtype=torch.int8)
    w_scale = torch.rand(n, generator=gen, device=device) / 100 + 1e-4
    w_bf16 = torch.randn(n, k, generator=gen, device=device, dtype=torch.bfloat16) / k**0.5

    def make_inputs():
        xq = torch.randint(-127, 128, (m, k), generator=gen, device=device, dtype=torch.int8)
        x_scale = torch.rand(m, 1, generator=gen, device=device) + 0.01
        return xq, x_scale, torch.randn(m, k, generator=gen, device=device, dtype=torch.bfloat16)

    return wq, w_scale, w_bf16, make_inputs


def time_w8a8_against_bf16(m: int, k: int, n: int, device: str, threshold: float, benchmark=None, record=None,
                           rounds: int = 15):
    """Time the student's Triton W8A8 GEMM (int8 codes in, bf16 out) against cuBLAS bf16 F.linear on the
    same shape, fresh activations every call. Returns the lab.timing.Comparison."""
    wq, w_scale, w_bf16, make_inputs = w8a8_speed_inputs(m, k, n, device)

    def check(out, args):
        xq, x_scale, _ = args
        want = (xq.float() @ wq.float().t()) * x_scale * w_scale
        assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), want, rtol=2**-7, atol=1e-3), \
            "the timed W8A8 output differs from the int8 product: the kernel must compute what it is timed on"

    return compare(lambda xq, x_scale, x: impl.int8_matmul.w8a8_matmul_triton(xq, x_scale, wq, w_scale),
                   lambda xq, x_scale, x: F.linear(x, w_bf16), threshold=threshold, make_inputs=make_inputs,
                   check=check, what=f"W8A8 Triton GEMM vs bf16 cuBLAS, M={m} K={k} N={n}", rounds=rounds,
                   benchmark=benchmark, record=record)


@pytest.mark.gpu
@pytest.mark.speed
def test_w8a8_gemm_keeps_up_with_bf16_at_large_m(benchmark, record_property):
    m, k, n = W8A8_SHAPE
    time_w8a8_against_bf16(m, k, n, "cuda", W8A8_SPEEDUP, benchmark, record_property).assert_passes()
