from solutions.inf24.int4 import *  # noqa: F401,F403
import torch


def pack_int4(values):
    return (values[..., 0::2] << 4) | values[..., 1::2]


def unpack_int4(packed):
    return torch.stack((packed >> 4, packed & 0xF), dim=-1).flatten(-2)


def quantize_int4(weight, group_size=32):
    if weight.dim() != 2 or group_size % 2 or weight.shape[1] % group_size:
        raise ValueError(f"group_size={group_size} must be even and divide K")
    n, k = weight.shape
    groups = weight.float().reshape(n, k // group_size, group_size)
    amax = groups.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax)).half()
    codes = torch.round(groups / scale.float()).clamp(QMIN, QMAX)
    return pack_int4((codes + OFFSET).to(torch.uint8).reshape(n, k)), scale.squeeze(-1)


def dequantize_int4(packed, scales, group_size=32, dtype=torch.float32):
    codes = unpack_int4(packed).float() - OFFSET
    n, k = codes.shape
    return (codes.reshape(n, k // group_size, group_size) * scales.float()[..., None]).reshape(n, k).to(dtype)
