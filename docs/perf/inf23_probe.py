"""Which SDPA path do inf23's two sides take? Decode, Llama-3-8B attention shape, batch 8, bf16."""
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
B, H, Hkv, D, dt = 8, 32, 8, 128, torch.bfloat16
def t(fn, n=30):
    for _ in range(5): fn()
    torch.cuda.synchronize(); s, e = torch.cuda.Event(True), torch.cuda.Event(True); s.record()
    for _ in range(n): fn()
    e.record(); torch.cuda.synchronize(); return s.elapsed_time(e) / n * 1e3
q = torch.randn(B, H, 1, D, dtype=dt, device="cuda")
big = torch.randn(B, Hkv, 32768 + 1024, D, dtype=dt, device="cuda")
k32s, k32c, k4 = big[:, :, :32768], big[:, :, :32768].contiguous(), torch.randn(B, Hkv, 4096, D, dtype=dt, device="cuda")
def gqa(q, k): return F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
def grouped(q, k): return F.scaled_dot_product_attention(q.view(B, Hkv, H // Hkv, D), k, k).view(B, H, 1, D)
for name, k in (("4k contiguous", k4), ("32k slice of 33k", k32s), ("32k contiguous", k32c)):
    gb = 2 * k.numel() * 2 / 1e9
    for fname, f in (("enable_gqa", gqa), ("grouped-q", grouped)):
        us = t(lambda: f(q, k)); print(f"{name:18s} {fname:10s} {us:8.1f} us  {gb / us * 1e6:7.0f} GB/s")
        for be in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
            try:
                with sdpa_kernel([be]): us = t(lambda: f(q, k), 10)
                print(f"    only {be.name:20s} {us:8.1f} us")
            except Exception as e: print(f"    only {be.name:20s} refused: {str(e).splitlines()[0][:80]}")
