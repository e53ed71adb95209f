"""inf21 tests: the Triton GQA decode kernel, against float64 MHA on repeated K/V and against SDPA for speed.

On a CPU the kernel runs in the Triton interpreter (`lab.triton_interpreter`, small odd shapes); on a GPU
natively, with larger ones. `lab.testing.count_triton_launches` checks that the result comes from Triton
launches, not from a PyTorch path.
"""
import pytest
import torch

from lab.impl import Topic
from lab.testing import count_triton_launches, pick
from lab.triton_interpreter import run_in_interpreter

from exercises.inf21.test_gqa import GPU_DECODE, check_close, mha_reference, time_gqa_decode

impl = Topic("inf21")

# Speed (GPU; docs/thresholds.md, inf21): the kernel at test_gqa's decode shape (Llama-3-8B heads, batch 8,
# 32k context, bf16) against SDPA MHA with 32 KV heads. It reads the 1.07 GB of GQA-8 K/V once: the ideal is
# 4x SDPA MHA (which streams 4.3 GB at ~4.2 TB/s on an H200). SDPA's own GQA reached 2.75x at 8k (measured
# here); the curriculum's 2.5x was the starting threshold. Calibrated on an H100 (session 11, 20 measurements
# in six processes, two calls): the reference 2.75-3.35x (2.75-2.94 in the first call after the machine's
# start, 3.26-3.35 in the next), the naive kernel-per-query-head 1.71-1.94x. 2.5x left the reference's
# worst 10% over. Session 12 (another H100, the first call after its start) read 2.68-3.19x, naive 1.79-1.88x:
# 2.25x left 2.68 19% over, so over the 30 measurements 2.2x leaves the reference 22% over, the naive 12% under.
# An H200 (session 14) read 2.37-2.93x, the naive 1.24-1.28x: its profile (lab/profiles/nvidia-h200.toml) holds
# 1.95x, since one threshold for both cards would sit 4% over the H100's naive 1.88x.
KERNEL_DECODE_SPEEDUP = 2.2


def check_gqa_decode_kernel(seed: int) -> None:
    """The kernel against float64 MHA on repeated K/V: MHA, GQA and MQA ratios, head_dims that are not
    powers of two, contexts that are not multiples of the tile, a cache slice with a longer buffer behind it,
    several splits. Module level: lab.triton_interpreter calls it by name in a child process."""
    gen = torch.Generator().manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    big = device == "cuda"
    cases = []
    for num_kv_heads, group in ((pick(gen, 2, 3), 1), (pick(gen, 1, 2), pick(gen, 2, 5)), (1, pick(gen, 3, 7))):
        kv_len = pick(gen, 700, 3000) if big else pick(gen, 20, 75) | 1
        head_dim = 128 if big else 2 * pick(gen, 8, 20)
        cases.append((pick(gen, 1, 3), num_kv_heads, group, kv_len, head_dim))
    dtypes = [torch.float32, torch.bfloat16, torch.float16] if big else [torch.float32, torch.bfloat16]
    for i, (batch, num_kv_heads, group, kv_len, head_dim) in enumerate(cases):
        for dtype in dtypes:
            q = torch.randn(batch, num_kv_heads * group, 1, head_dim, generator=gen).to(device, dtype)
            buffer = torch.randn(2, batch, num_kv_heads, kv_len + pick(gen, 1, 9), head_dim, generator=gen) * 1.5
            k, v = buffer.to(device, dtype)[:, :, :, :kv_len].unbind(0)          # a slice of a longer cache
            want = mha_reference(q.cpu(), k.cpu(), v.cpu(), causal=True)
            for num_splits in (pick(gen, 2, 5), None):              # None: the default split count
                with count_triton_launches() as launches:
                    got = impl.gqa_decode.gqa_decode_triton(q, k, v, num_splits=num_splits)
                what = (f"gqa_decode_triton, batch {batch}, {num_kv_heads * group} query / {num_kv_heads} KV heads, "
                        f"kv_len {kv_len}, head_dim {head_dim}, {dtype}, num_splits {num_splits}")
                assert 1 <= launches.count <= 2, (
                    f"{what}: expected the split and combine Triton launches, saw {launches.count} "
                    f"({launches.kernels}): the result must come from your kernels")
                assert got.dtype == dtype, f"{what}: expected the output in {dtype}, got {got.dtype}"
                # float32 products ("ieee" dots) ~1e-6; 16-bit inputs, scores and P rounded as in SDPA: as test_gqa.
                check_close(got.cpu(), want, 1e-5 if dtype == torch.float32 else 6e-2, what)


def test_gqa_decode_kernel_matches_float64_mha(seed):
    if torch.cuda.is_available():
        check_gqa_decode_kernel(seed)
    else:
        run_in_interpreter(__file__, "check_gqa_decode_kernel", seed)


def test_gqa_decode_kernel_rejects_what_it_cannot_decode(rng):
    q, k = torch.randn(1, 4, 1, 16, generator=rng), torch.randn(1, 2, 9, 16, generator=rng)
    three_heads = torch.randn(1, 3, 9, 16, generator=rng)
    strided = torch.randn(1, 2, 16, 9, generator=rng).transpose(2, 3)          # [1, 2, 9, 16], head_dim stride 9
    bad = {"q_len 2": (torch.cat([q, q], dim=2), k, k), "4 query heads on 3 KV heads": (q, three_heads, three_heads),
           "head_dim not contiguous": (q, strided, strided)}
    for what, args in bad.items():
        with pytest.raises(ValueError):
            impl.gqa_decode.gqa_decode_triton(*args)
            pytest.fail(f"{what}: expected a ValueError")


@pytest.mark.gpu
@pytest.mark.speed
def test_gqa8_decode_kernel_beats_mha32_on_gpu(benchmark, record_property):
    time_gqa_decode(**GPU_DECODE, device="cuda", dtype=torch.bfloat16, threshold=KERNEL_DECODE_SPEEDUP,
                    benchmark=benchmark, record=record_property, name="Triton GQA decode kernel",
                    attention=impl.gqa_decode.gqa_decode_triton).assert_passes()
