"""W8A8 Triton GEMM variants vs cuBLAS bf16 at M=8192 K=4096 N=14336 (issue 10). Prints a table."""
import sys, time, torch, triton, triton.language as tl
from triton.testing import do_bench
sys.path.insert(0, ".")
from solutions.inf14 import int8_matmul as ref

M, K, N = 8192, 4096, 14336
torch.manual_seed(0)
xq = torch.randint(-127, 128, (M, K), dtype=torch.int8, device="cuda")
wq = torch.randint(-127, 128, (N, K), dtype=torch.int8, device="cuda")
xs = torch.rand(M, 1, device="cuda") * 0.01 + 1e-3
ws = torch.rand(N, device="cuda") * 0.01 + 1e-3
xb = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
wb = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
want = ref.w8a8_matmul(xq, xs, wq, ws)
t_bf16 = do_bench(lambda: xb @ wb.t(), warmup=100, rep=500, return_mode="median")
flops = 2 * M * N * K
print(f"cuBLAS bf16: {t_bf16:.3f} ms = {flops / t_bf16 / 1e9:.0f} TFLOP/s", flush=True)
try:
    t_int = do_bench(lambda: torch._int_mm(xq, wq.t()), warmup=50, rep=300, return_mode="median")
    print(f"torch._int_mm: {t_int:.3f} ms = {flops / t_int / 1e9:.0f} TOPS ({t_bf16 / t_int:.2f}x bf16)", flush=True)
except Exception as e:
    print("torch._int_mm failed", e)

triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))


@triton.jit
def k_even(x_ptr, xs_ptr, w_ptr, ws_ptr, o_ptr, M, N, K, sxm, swn, som,
           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tpg = GROUP_M * num_pid_n
    first_m = (pid // tpg) * GROUP_M
    gm = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % tpg) % gm
    pid_n = (pid % tpg) // gm
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    xp = x_ptr + (rows % M)[:, None] * sxm + ks[None, :]
    wp = w_ptr + (cols % N)[None, :] * swn + ks[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, K // BLOCK_K):
        acc = tl.dot(tl.load(xp), tl.load(wp), acc, out_dtype=tl.int32)
        xp += BLOCK_K
        wp += BLOCK_K
    out = acc.to(tl.float32) * tl.load(xs_ptr + rows, mask=rows < M, other=0.0)[:, None] \
        * tl.load(ws_ptr + cols, mask=cols < N, other=0.0)[None, :]
    tl.store(o_ptr + rows[:, None] * som + cols[None, :], out.to(o_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


@triton.jit
def k_tma(x_ptr, xs_ptr, w_ptr, ws_ptr, o_ptr, M, N, K, sxm, swn, som,
          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
          NUM_STAGES: tl.constexpr):
    xd = tl.make_tensor_descriptor(x_ptr, shape=[M, K], strides=[sxm, 1], block_shape=[BLOCK_M, BLOCK_K])
    wd = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[swn, 1], block_shape=[BLOCK_N, BLOCK_K])
    pid = tl.program_id(0)
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tpg = GROUP_M * num_pid_n
    first_m = (pid // tpg) * GROUP_M
    gm = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % tpg) % gm
    pid_n = (pid % tpg) // gm
    om, on = pid_m * BLOCK_M, pid_n * BLOCK_N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in tl.range(0, tl.cdiv(K, BLOCK_K), num_stages=NUM_STAGES):
        a = xd.load([om, k * BLOCK_K])
        b = wd.load([on, k * BLOCK_K])
        acc = tl.dot(a, b.T, acc, out_dtype=tl.int32)
    rows = om + tl.arange(0, BLOCK_M)
    cols = on + tl.arange(0, BLOCK_N)
    out = acc.to(tl.float32) * tl.load(xs_ptr + rows, mask=rows < M, other=0.0)[:, None] \
        * tl.load(ws_ptr + cols, mask=cols < N, other=0.0)[None, :]
    tl.store(o_ptr + rows[:, None] * som + cols[None, :], out.to(o_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


@triton.jit
def k_persist(x_ptr, xs_ptr, w_ptr, ws_ptr, o_ptr, M, N, K, sxm, swn, som,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
              NUM_SMS: tl.constexpr, WS: tl.constexpr, FLAT: tl.constexpr):
    xd = tl.make_tensor_descriptor(x_ptr, shape=[M, K], strides=[sxm, 1], block_shape=[BLOCK_M, BLOCK_K])
    wd = tl.make_tensor_descriptor(w_ptr, shape=[N, K], strides=[swn, 1], block_shape=[BLOCK_N, BLOCK_K])
    od = tl.make_tensor_descriptor(o_ptr, shape=[M, N], strides=[som, 1], block_shape=[BLOCK_M, BLOCK_N])
    num_pid_m, num_pid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    k_tiles = tl.cdiv(K, BLOCK_K)
    tpg = GROUP_M * num_pid_n
    for tile in tl.range(tl.program_id(0), num_tiles, NUM_SMS, flatten=FLAT, warp_specialize=WS):
        first_m = (tile // tpg) * GROUP_M
        gm = min(num_pid_m - first_m, GROUP_M)
        pid_m = first_m + (tile % tpg) % gm
        pid_n = (tile % tpg) // gm
        om, on = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for k in range(k_tiles):
            acc = tl.dot(xd.load([om, k * BLOCK_K]), wd.load([on, k * BLOCK_K]).T, acc, out_dtype=tl.int32)
        rows = om + tl.arange(0, BLOCK_M)
        cols = on + tl.arange(0, BLOCK_N)
        out = acc.to(tl.float32) * tl.load(xs_ptr + rows, mask=rows < M, other=0.0)[:, None] \
            * tl.load(ws_ptr + cols, mask=cols < N, other=0.0)[None, :]
        od.store([om, on], out.to(o_ptr.dtype.element_ty))


xs1, ws1 = xs.reshape(-1).contiguous(), ws.contiguous()
SMS = torch.cuda.get_device_properties(0).multi_processor_count


def launch(kernel, grid_tiles, bm, bn, bk, gm=8, **kw):
    out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    args = (xq, xs1, wq, ws1, out, M, N, K, xq.stride(0), wq.stride(0), out.stride(0))
    def run():
        kernel[(grid_tiles,)](*args, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=gm, **kw)
        return out
    return run


rows = [("solution (autotuned)", lambda: ref.w8a8_matmul_triton(xq, xs, wq, ws))]
QUICK = len(sys.argv) > 1
tiles = lambda bm, bn: triton.cdiv(M, bm) * triton.cdiv(N, bn)
for bm, bn, bk, st, w in ([] if QUICK else [(128, 256, 128, 3, 8), (128, 256, 128, 4, 8), (256, 128, 128, 3, 8), (128, 128, 128, 4, 4),
                          (128, 256, 64, 4, 8)]):
    rows.append((f"even {bm}x{bn}x{bk} s{st} w{w}", launch(k_even, tiles(bm, bn), bm, bn, bk, num_stages=st, num_warps=w)))
for bm, bn, bk, st, w in ([] if QUICK else [(128, 256, 128, 3, 8), (128, 256, 128, 4, 8), (256, 128, 128, 3, 8), (128, 128, 128, 4, 8),
                          (128, 256, 64, 4, 8), (256, 256, 64, 3, 8)]):
    rows.append((f"tma {bm}x{bn}x{bk} s{st} w{w}", launch(k_tma, tiles(bm, bn), bm, bn, bk, NUM_STAGES=st, num_warps=w)))
for bm, bn, bk, st, w, ws_, fl in [(128, 256, 128, 3, 8, False, True), (128, 256, 128, 4, 8, True, True),
                                   (128, 256, 128, 3, 8, True, False), (256, 128, 128, 3, 8, True, True),
                                   (128, 128, 128, 4, 8, True, True), (128, 256, 64, 4, 8, True, True)]:
    rows.append((f"persist {bm}x{bn}x{bk} s{st} w{w} ws{int(ws_)} fl{int(fl)}",
                 launch(k_persist, min(SMS, tiles(bm, bn)), bm, bn, bk, NUM_SMS=SMS, WS=ws_, FLAT=fl,
                        num_stages=st, num_warps=w)))
for bm, bn, bk, st, w, ws_, fl, gm in [(128, 256, 128, 3, 8, False, True, 4), (128, 256, 128, 3, 8, False, True, 16),
                                       (256, 128, 128, 3, 8, False, True, 8), (128, 256, 64, 5, 8, False, True, 8),
                                       (128, 256, 64, 6, 8, False, True, 8), (256, 128, 64, 5, 8, False, True, 8),
                                       (128, 256, 128, 3, 4, False, True, 8), (256, 128, 128, 3, 8, True, False, 8)]:
    rows.append((f"persist {bm}x{bn}x{bk} s{st} w{w} ws{int(ws_)} fl{int(fl)} g{gm}",
                 launch(k_persist, min(SMS, tiles(bm, bn)), bm, bn, bk, gm=gm, NUM_SMS=SMS, WS=ws_, FLAT=fl,
                        num_stages=st, num_warps=w)))
print(f"| variant | ms | TOPS | vs bf16 | max |err| |", flush=True)
for name, fn in rows:
    try:
        got = fn()
        err = (got.float() - want.float()).abs().max().item()
        t = do_bench(fn, warmup=100, rep=500, return_mode="median")
        print(f"| {name} | {t:.3f} | {flops / t / 1e9:.0f} | {t_bf16 / t:.2f}x | {err:.3g} |", flush=True)
    except Exception as e:
        print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:150]} |", flush=True)
