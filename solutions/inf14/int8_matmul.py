"""inf14 · The W8A8 matmul: int8 activations times int8 weights, accumulated in int32, scaled in the epilogue.

With activations quantized per token (x ≈ xq * x_scale[m]) and weights per output channel
(w ≈ wq * w_scale[n]), both scales factor out of the dot product over k:

    y[m, n] = sum_k x[m, k] w[n, k] ≈ x_scale[m] * w_scale[n] * sum_k xq[m, k] wq[n, k]

so the whole inner loop runs on int8 tensor cores (twice the bf16 rate on an H100/H200) and the floats
come back only once per output, in the epilogue. The sum must be exact: each product is at most
128² = 2^14, so K of them need 14 + log2(K) bits. int32 holds K up to 131,072; float32 (24-bit mantissa)
is exact only to K ≈ 1,040 at full scale; float16 overflows after five products.

Two implementations with one signature: `w8a8_matmul` in PyTorch (the CPU path and the reference) and
`w8a8_matmul_triton`, a Triton kernel (`tl.dot` on int8 with an int32 accumulator) for the GPU; on a CPU
the kernel runs in the Triton interpreter (TRITON_INTERPRET=1), which is how the tests check it there.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def _check_w8a8_args(xq, x_scale, wq, w_scale) -> None:
    """ValueError with the expected shapes and dtypes unless the four tensors fit together."""
    if not all(isinstance(t, torch.Tensor) for t in (xq, x_scale, wq, w_scale)):
        raise ValueError("xq, x_scale, wq and w_scale must all be tensors")
    if xq.dtype != torch.int8 or wq.dtype != torch.int8 or xq.dim() != 2 or wq.dim() != 2:
        raise ValueError(f"xq [M, K] and wq [N, K] must be 2-D int8 tensors, got {xq.dtype} {list(xq.shape)} "
                         f"and {wq.dtype} {list(wq.shape)}")
    (m, k), (n, k2) = xq.shape, wq.shape
    if k != k2:
        raise ValueError(f"xq is [M={m}, K={k}] but wq is [N={n}, K={k2}]: the inner sizes must match")
    if x_scale.shape not in ((m, 1), (m,)) or w_scale.shape != (n,):
        raise ValueError(f"x_scale must be [M, 1] = [{m}, 1] and w_scale [N] = [{n}], got "
                         f"{list(x_scale.shape)} and {list(w_scale.shape)}")


def int8_matmul(xq: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """The exact int32 products xq @ wq.T: xq [M, K] int8, wq [N, K] int8 -> [M, N] int32.

    Every entry must equal the true integer sum of K int8 products (tests use K past 1,040, where a float32
    accumulator starts to round, and values of ±127), for every M, K, N >= 1, on a CPU and on CUDA, on
    the device of the inputs. Raises ValueError unless both are 2-D int8 with the same K.
    Hints: README.md, "Hints" (which int8 GEMM torch offers, and the shapes it refuses).
    """
    if xq.dtype != torch.int8 or wq.dtype != torch.int8 or xq.dim() != 2 or wq.dim() != 2 \
            or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"need xq [M, K] and wq [N, K], both int8; got {xq.dtype} {list(xq.shape)} and "
                         f"{wq.dtype} {list(wq.shape)}")
    # BEGIN SOLUTION
    if xq.device.type == "cpu":
        return torch._int_mm(xq.contiguous(), wq.t())            # oneDNN int8 GEMM, int32 accumulation (VNNI)
    m, k, n = xq.shape[0], xq.shape[1], wq.shape[0]
    if m > 16 and k % 8 == 0 and n % 8 == 0:
        return torch._int_mm(xq.contiguous(), wq.t())
    return (xq.double() @ wq.double().t()).to(torch.int32)        # exact: |sum| < 2^31 << 2^53
    # END SOLUTION


def w8a8_matmul(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """y ≈ x @ w.T from int8 codes and their scales, in PyTorch (the reference for the Triton kernel).

    xq: [M, K] int8, x_scale: [M, 1] float32 (per token); wq: [N, K] int8, w_scale: [N] float32 (per
    output channel). Returns [M, N] in `out_dtype`: y[m, n] = int8_matmul(xq, wq)[m, n] in float32 times
    x_scale[m] times w_scale[n] (the epilogue, in float32), then cast once. x_scale may also be [M].
    Raises ValueError, naming the expected shapes, unless the four tensors fit together.
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    # BEGIN SOLUTION
    acc = int8_matmul(xq, wq)
    return (acc.float() * x_scale.float().reshape(-1, 1) * w_scale.float()).to(out_dtype)
    # END SOLUTION


@triton.jit
def w8a8_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """One program computes the output tile out[BLOCK_M rows, BLOCK_N columns].

    x: [M, K] int8 (row stride stride_xm, columns contiguous); w: [N, K] int8 (row stride stride_wn);
    x_scale: [M] float32; w_scale: [N] float32; out: [M, N] (row stride stride_om), any float dtype.
    The 1-D grid has cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N) programs, each owning one tile; which program
    takes which tile is yours (GROUP_M is there for an order that keeps shared w tiles in L2).
    out[m, n] = x_scale[m] * w_scale[n] * (sum_k x[m, k] * w[n, k], exact in int32 on int8 tensor cores),
    the scaling in float32, cast to out's dtype; only entries inside [M, N] are written. Any M, N, K >= 1
    (not multiples of the blocks).
    Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    pid = tl.program_id(0)
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tiles_per_group = GROUP_M * num_pid_n
    first_m = (pid // tiles_per_group) * GROUP_M
    group_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % tiles_per_group) % group_m
    pid_n = (pid % tiles_per_group) // group_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    # Rows and columns past the edge wrap around (% M, % N) instead of being masked: the loads stay
    # unmasked in M and N, and the store below drops those duplicates.
    x_ptrs = x_ptr + (rows % M)[:, None] * stride_xm + ks[None, :]            # [BLOCK_M, BLOCK_K]
    w_ptrs = w_ptr + (cols % N)[None, :] * stride_wn + ks[:, None]            # [BLOCK_K, BLOCK_N] = w.T tile
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        x = tl.load(x_ptrs, mask=ks[None, :] < k_left, other=0)
        w = tl.load(w_ptrs, mask=ks[:, None] < k_left, other=0)
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)                          # int8 x int8 -> int32
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K

    x_scale = tl.load(x_scale_ptr + rows, mask=rows < M, other=0.0)
    w_scale = tl.load(w_scale_ptr + cols, mask=cols < N, other=0.0)
    out = acc.to(tl.float32) * x_scale[:, None] * w_scale[None, :]
    out_ptrs = out_ptr + rows[:, None] * stride_om + cols[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
    # END SOLUTION


# Tiles for an H100/H200, tried once per shape by the autotuner on the first call. int8 tensor cores
# want BLOCK_K >= 32; a 128 x 256 x 128 tile stages (128 + 256) * 128 B = 48 KiB of operands per pipeline
# stage, so 3-4 stages fit in shared memory.
W8A8_CONFIGS = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=3, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=3, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=8),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_stages=4, num_warps=4),
]
w8a8_kernel_tuned = triton.autotune(W8A8_CONFIGS, key=["M", "N", "K"])(w8a8_kernel)
# The Triton interpreter (TRITON_INTERPRET=1: tests on a CPU) runs one small tile and no autotuning.
INTERPRETER_TILE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 2}
# BEGIN SOLUTION


# The reference's own faster path for large M on Hopper (the lesson's stretch goal, not part of the stub):
# the same tile product, but (1) persistent: one program per SM walks the tiles tile += NUM_SMS, so no
# program launches or drains mid-run and the next tile's loads overlap this tile's epilogue; (2) the
# operand tiles come in by TMA (tensor descriptors: the copy engine computes addresses and swizzles shared
# memory, the warps only issue MMAs); (3) GROUP_M = 16 keeps 16 row-tiles' x in L2 while they sweep w.
# Measured on an H100 (M=8192, K=4096, N=14336, triton.testing.do_bench): 1.75x cuBLAS bf16 against 1.55x
# for the autotuned tiled kernel above (.perf sweep, docs/performance.md).
@triton.jit
def _w8a8_persistent_kernel(x_ptr, x_scale_ptr, w_ptr, w_scale_ptr, out_ptr, M, N, K, stride_xm, stride_wn,
                           stride_om, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                           GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr):
    x_desc = tl.make_tensor_descriptor(x_ptr, shape=[M, K], strides=[stride_xm, 1], block_shape=[BLOCK_M, BLOCK_K])
    w_desc = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[stride_wn, 1], block_shape=[BLOCK_N, BLOCK_K])
    o_desc = tl.make_tensor_descriptor(out_ptr, shape=[M, N], strides=[stride_om, 1],
                                       block_shape=[BLOCK_M, BLOCK_N])
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tiles_per_group = GROUP_M * num_pid_n
    for tile in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_SMS, flatten=True):
        first_m = (tile // tiles_per_group) * GROUP_M
        group_m = min(num_pid_m - first_m, GROUP_M)
        pid_m = first_m + (tile % tiles_per_group) % group_m
        pid_n = (tile % tiles_per_group) // group_m
        row0, col0 = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for k in range(tl.cdiv(K, BLOCK_K)):        # TMA pads reads past M, N and K with zeros
            acc = tl.dot(x_desc.load([row0, k * BLOCK_K]), w_desc.load([col0, k * BLOCK_K]).T, acc,
                         out_dtype=tl.int32)
        rows = row0 + tl.arange(0, BLOCK_M)
        cols = col0 + tl.arange(0, BLOCK_N)
        out = acc.to(tl.float32) * tl.load(x_scale_ptr + rows, mask=rows < M, other=0.0)[:, None] \
            * tl.load(w_scale_ptr + cols, mask=cols < N, other=0.0)[None, :]
        o_desc.store([row0, col0], out.to(out_ptr.dtype.element_ty))      # TMA drops the rows past M, N


PERSISTENT_TILE = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 16, "num_stages": 3, "num_warps": 8}
PERSISTENT_MIN_M = 512             # below this, the tiled kernel's smaller tiles keep more SMs busy


def _tensor_descriptor_scratch(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _persistent_fits(xq: torch.Tensor, wq: torch.Tensor, out: torch.Tensor) -> bool:
    """TMA needs 16-byte-aligned row strides (and a Hopper or newer GPU); the 3 stages of 128x256x128 operands
    and a 128x256 output tile fit in shared memory for 16-bit outputs only (float32: 273 KB > 227 KB).
    On a CPU the interpreter runs it."""
    aligned = all((t.stride(0) * t.element_size()) % 16 == 0 and t.data_ptr() % 16 == 0 for t in (xq, wq, out))
    aligned = aligned and out.element_size() == 2
    if not xq.is_cuda:
        return aligned
    return aligned and xq.shape[0] >= PERSISTENT_MIN_M and torch.cuda.get_device_capability(xq.device)[0] >= 9
# END SOLUTION


def w8a8_matmul_triton(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                       out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """`w8a8_matmul` as one Triton kernel launch (same arguments, same result up to out_dtype rounding).

    Returns a new [M, N] tensor in out_dtype, computed by one launch of `w8a8_kernel`: on a CUDA device
    through `w8a8_kernel_tuned` (the autotuner picks the tile sizes), on a CPU (the Triton interpreter)
    with the tile `INTERPRETER_TILE`. Accepts the inputs w8a8_matmul accepts (x_scale [M, 1] or [M],
    tensors that are not contiguous) and raises the same ValueErrors. Hints: README.md, "Hints".
    """
    _check_w8a8_args(xq, x_scale, wq, w_scale)
    # BEGIN SOLUTION
    xq, wq = xq.contiguous(), wq.contiguous()
    x_scale, w_scale = x_scale.float().reshape(-1).contiguous(), w_scale.float().contiguous()
    (m, k), n = xq.shape, wq.shape[0]
    out = torch.empty(m, n, device=xq.device, dtype=out_dtype)
    args = (xq, x_scale, wq, w_scale, out, m, n, k, xq.stride(0), wq.stride(0), out.stride(0))
    if _persistent_fits(xq, wq, out):
        if xq.is_cuda:          # one program per SM; the interpreter runs three, to walk several tiles each
            triton.set_allocator(_tensor_descriptor_scratch)
            tile, programs = PERSISTENT_TILE, torch.cuda.get_device_properties(xq.device).multi_processor_count
        else:
            tile, programs = INTERPRETER_TILE, 3
        tiles = triton.cdiv(m, tile["BLOCK_M"]) * triton.cdiv(n, tile["BLOCK_N"])
        _w8a8_persistent_kernel[(min(programs, tiles),)](*args, NUM_SMS=programs, **tile)
    elif xq.is_cuda:
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        w8a8_kernel_tuned[grid](*args)
    else:
        tile = INTERPRETER_TILE
        w8a8_kernel[(triton.cdiv(m, tile["BLOCK_M"]) * triton.cdiv(n, tile["BLOCK_N"]),)](*args, **tile)
    return out
    # END SOLUTION
