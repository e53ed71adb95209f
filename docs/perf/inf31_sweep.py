"""inf31: the reference paged decode kernel over tile configs: fraction of copy bandwidth (bf16, Llama-3-8B attn)."""
import math, sys, torch, triton
sys.path.insert(0, ".")
from lab.paged_bench import paged_inputs, NUM_HEADS, NUM_KV_HEADS, HEAD_DIM
from lab.hardware import measure_copy_bandwidth
import solutions.inf31.paged_attention as pa
from triton.testing import do_bench
bw = measure_copy_bandwidth("cuda"); print(torch.cuda.get_device_name(), f"copy {bw/1e9:.0f} GB/s")
for batch, context in ((16, 4096), (32, 8192)):
    k_cache, v_cache, tables, lens, k, v = paged_inputs(batch, context, 16)
    nbytes = 2 * k.numel() * 2
    q = torch.randn(batch, NUM_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    ref = torch.nn.functional.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True)[:, :, 0]
    t = do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True), rep=200)
    print(f"b{batch} c{context} sdpa enable_gqa {t*1e3:.1f} us {nbytes/t/1e6/bw*1e9:.0%}")
    qg = q.view(batch, NUM_KV_HEADS, 4, HEAD_DIM)
    t = do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(qg, k, v), rep=200)
    print(f"b{batch} c{context} sdpa grouped-q {t*1e3:.1f} us {nbytes/t/1e6/bw*1e9:.0%}")
    t = do_bench(lambda: pa.paged_attention_triton(q, k_cache, v_cache, tables, lens), rep=200)
    print(f"b{batch} c{context} reference (autotuned) {t*1e3:.1f} us {nbytes/t/1e6/bw*1e9:.0%}", flush=True)
    best = []
    for part in (256, 512, 1024):
        for bn in (32, 64, 128, 256):
            if bn > part: continue
            for w in (2, 4, 8):
                for s in (1, 2, 3, 4):
                    num_parts = triton.cdiv(tables.shape[1] * 16, part)
                    po = torch.empty(batch, NUM_HEADS, num_parts, HEAD_DIM, device="cuda", dtype=torch.float32)
                    pl = torch.empty(batch, NUM_HEADS, num_parts, device="cuda", dtype=torch.float32)
                    out = torch.empty(batch, NUM_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
                    def go():
                        pa.paged_decode_kernel[(batch, NUM_KV_HEADS, num_parts)](
                            q, k_cache, v_cache, tables, lens, po, pl, 1 / math.sqrt(HEAD_DIM),
                            q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), tables.stride(0),
                            po.stride(0), po.stride(1), po.stride(2), pl.stride(0), pl.stride(1),
                            GROUP=4, GROUP_PAD=16, HEAD_DIM=HEAD_DIM, BLOCK_SIZE=16, BLOCK_N=bn, PARTITION=part,
                            num_warps=w, num_stages=s)
                        pa.merge_partitions_kernel[(batch, NUM_HEADS)](po, pl, out, num_parts, po.stride(0), po.stride(1),
                            po.stride(2), pl.stride(0), pl.stride(1), out.stride(0), out.stride(1), HEAD_DIM=HEAD_DIM,
                            PARTS_PAD=max(2, triton.next_power_of_2(num_parts)))
                    try:
                        go(); err = (out.float() - ref.float()).abs().max().item()
                        t = do_bench(go, rep=100)
                    except Exception as e:
                        print("fail", part, bn, w, s, str(e)[:80]); continue
                    best.append((t, part, bn, w, s, err))
    best.sort()
    for t, part, bn, w, s, err in best[:6]:
        print(f"  part {part} BLOCK_N {bn} warps {w} stages {s}: {t*1e3:.1f} us {nbytes/t/1e6/bw*1e9:.0%} err {err:.1e}", flush=True)
    del k_cache, v_cache, k, v; torch.cuda.empty_cache()
