"""The lab's decoder: a readable Llama-family transformer with pluggable attention, linears and cache.

One forward pass is `model(input_ids, positions=None, cache=None, attention_mask=None)`:

    input_ids       [batch, num_tokens] int64   the new tokens of this step
    positions       [batch, num_tokens] int64   their RoPE positions (default: cache slots, 0, 1, 2, ...)
    cache           anything with `seq_len` and `update(layer_idx, k, v)` (see `Cache` below), or None
    attention_mask  [batch, seq_len + num_tokens] bool/int, 1 = a real token, 0 = padding, or None; or a
                    full bool mask [batch or 1, 1, num_tokens, seq_len + num_tokens] (True = may attend),
                    used as given (a packed batch's block-diagonal causal mask, inf30)
    cache_position  [num_tokens] int64 slots to write this step's K/V into a *static* cache, or None
    logits_index    [k] int64 token indices: compute logits only there (a packed batch's last tokens), or None
    returns         logits [batch, num_tokens, vocab_size] (only the last position with last_only=True,
                    [batch, k, vocab_size] with logits_index)

Two cache modes. Dynamic (no `cache_position`): the model reads `cache.seq_len` and the cache returns
the K/V stored so far, so shapes grow by one every decode step. Static (`cache_position` given, as
gpt-fast and Hugging Face's StaticCache do): the cache returns its whole preallocated buffers
[batch, num_kv_heads, max_len, head_dim] and the mask hides the slots after `cache_position`; no shape
and no Python number changes between steps, so `torch.compile` and CUDA graphs can capture one step.

Three seams let later topics plug in a student's parts without touching this file:
- `model.attention`: a function `(q, k, v, mask) -> out` (see `sdpa_attention` for the contract);
- `model.replace_linears(factory)`: swap every projection for, e.g., an int8 or int4 linear;
- the `cache` argument: the student's KV cache from inf10.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from lab.config import ModelConfig

# An attention function. q: [B, num_heads, T, D]; k, v: [B, num_kv_heads, S, D]; mask: bool
# [B or 1, 1, T, S] (True = may attend) or None (every query sees every key). Returns [B, num_heads, T, D].
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class Cache(Protocol):
    """What the model needs from a KV cache.

    `seq_len` is the number of token slots already stored (read once, before layer 0 of a forward).
    `update(layer_idx, k, v)` stores this step's k, v ([B, num_kv_heads, T, D]) after the ones already
    stored for that layer and returns everything stored for it: ([B, num_kv_heads, seq_len + T, D], same).
    """

    @property
    def seq_len(self) -> int: ...

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class StaticCacheProtocol(Protocol):
    """A preallocated cache for the static mode: `update(layer_idx, k, v, cache_position)` writes k, v
    ([B, num_kv_heads, T, D]) into slots `cache_position` ([T]) and returns the whole buffers
    ([B, num_kv_heads, max_len, D]); `max_len` is their slot count."""

    max_len: int

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor,
               cache_position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention with grouped KV heads, through torch's fused SDPA."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 for 16-bit inputs (as Llama does), in float64 for float64."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    """The RoPE inverse frequencies [head_dim // 2] in float32, with Llama-3 scaling if configured.

    Only the plain and "llama3" schemes run here; inf23 teaches how they and the others are computed, so
    the lab takes Llama-3's from transformers rather than spelling it out.
    """
    d = config.head_dim
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "llama3":
        return _transformers_llama3_inv_freq(config)
    if kind not in (None, "default"):
        raise ValueError(f"lab.model supports plain and llama3 RoPE; got rope_type={kind!r} (see inf23)")
    return (1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))).float()


def _transformers_llama3_inv_freq(config: ModelConfig) -> torch.Tensor:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    hf_config = LlamaConfig(hidden_size=config.num_heads * config.head_dim, num_attention_heads=config.num_heads,
                            head_dim=config.head_dim, rope_theta=config.rope_theta,
                            rope_scaling={**(config.rope_scaling or {}), "rope_type": "llama3"},
                            max_position_embeddings=config.max_position_embeddings)
    with torch.device("cpu"):                   # computed on real numbers even while a model is built on `meta`
        inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, "cpu")
    return inv_freq.float().to(torch.empty(0).device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by angles given as cos, sin [B, 1, T, D] (halves layout, as Hugging Face)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    qkv_proj: nn.Module                  # only after LlamaModel.fuse_projections (which removes q/k/v_proj)

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        h = config.hidden_size
        self.q_proj = nn.Linear(h, config.q_size, bias=False)
        self.k_proj = nn.Linear(h, config.kv_size, bias=False)
        self.v_proj = nn.Linear(h, config.kv_size, bias=False)
        self.o_proj = nn.Linear(config.q_size, h, bias=False)

    def forward(self, x, cos, sin, mask, cache: Cache | StaticCacheProtocol | None, attention: AttentionFn,
                cache_position: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if hasattr(self, "qkv_proj"):                  # fused by LlamaModel.fuse_projections: one matmul
            q, k, v = self.qkv_proj(x).split((c.q_size, c.kv_size, c.kv_size), dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return self.o_proj(self.attend(q, k, v, cos, sin, mask, cache, attention, cache_position))

    def attend(self, q, k, v, cos, sin, mask, cache: Cache | StaticCacheProtocol | None, attention: AttentionFn,
               cache_position: torch.Tensor | None = None) -> torch.Tensor:
        """From the projections q [B, T, q_size], k and v [B, T, kv_size] to what o_proj takes, [B, T, q_size]:
        heads, RoPE, the cache's update, attention (lab.decode_variants' fused decode layer calls it alone)."""
        b, t, _ = q.shape
        c = self.config
        q = q.view(b, t, c.num_heads, c.head_dim).transpose(1, 2)                    # [B, H, T, D]
        k = k.view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)                 # [B, Hkv, T, D]
        v = v.view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache_position is not None:                # the static mode (LlamaModel.forward checked the cache)
            static = cast(StaticCacheProtocol, cache)
            k, v = static.update(self.layer_idx, k, v, cache_position)                # [B, Hkv, max_len, D]
        elif cache is not None:
            k, v = cast(Cache, cache).update(self.layer_idx, k, v)                    # [B, Hkv, S, D]
        out = attention(q, k, v, mask)                                                # [B, H, T, D]
        return out.transpose(1, 2).reshape(b, t, c.q_size)


class MLP(nn.Module):
    gate_up_proj: nn.Module              # only after LlamaModel.fuse_projections (which removes gate/up_proj)

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, f = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(h, f, bias=False)
        self.up_proj = nn.Linear(h, f, bias=False)
        self.down_proj = nn.Linear(f, h, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "gate_up_proj"):              # fused by LlamaModel.fuse_projections
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache, attention, cache_position=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, attention, cache_position)
        return x + self.mlp(self.post_attention_layernorm(x))


def build_mask(batch: int, num_tokens: int, past_len: int, attention_mask: torch.Tensor | None,
               device: torch.device) -> torch.Tensor | None:
    """The bool mask [B or 1, 1, T, S] of which key slots each new token may attend to, or None if all.

    New token i sits in slot past_len + i and sees slots <= its own (causal), minus padding slots.
    """
    seq_len = past_len + num_tokens
    if attention_mask is not None and attention_mask.dim() == 4:
        if attention_mask.dtype != torch.bool or attention_mask.shape[1:] != (1, num_tokens, seq_len) \
                or attention_mask.shape[0] not in (1, batch):
            raise ValueError(f"a 4-D attention_mask must be bool [batch or 1, 1, {num_tokens}, {seq_len}], got "
                             f"{attention_mask.dtype} {list(attention_mask.shape)}")
        return attention_mask                                 # a full mask, e.g. a packed batch's (inf30)
    if attention_mask is not None and attention_mask.shape != (batch, seq_len):
        raise ValueError(f"attention_mask must be [batch, past + new] = [{batch}, {seq_len}], "
                         f"got {list(attention_mask.shape)}")
    if attention_mask is None and num_tokens == 1:
        return None                                           # one new token sees every stored slot
    q_slot = past_len + torch.arange(num_tokens, device=device)
    k_slot = torch.arange(seq_len, device=device)
    mask = (k_slot[None, :] <= q_slot[:, None])[None, None]  # [1, 1, T, S]
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, None, :]
        # A padding query would see no key at all; let it see itself so softmax stays finite.
        mask = mask | _self_slots(num_tokens, seq_len, device)
    return mask


def build_static_mask(cache_position: torch.Tensor, max_len: int,
                      attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The bool mask [B or 1, 1, T, max_len] for a static cache: slot s is visible to the token written
    at slot p when s <= p (and, with attention_mask [B, max_len], when s holds a real token)."""
    k_slot = torch.arange(max_len, device=cache_position.device)
    mask = (k_slot[None, :] <= cache_position[:, None])[None, None]
    if attention_mask is not None:
        if attention_mask.shape[-1] != max_len:
            raise ValueError(f"with a static cache attention_mask must be [batch, max_len={max_len}], "
                             f"got {list(attention_mask.shape)}")
        mask = mask & attention_mask.bool()[:, None, None, :]
        mask = mask | (k_slot[None, :] == cache_position[:, None])[None, None]
    return mask


def _self_slots(num_tokens: int, seq_len: int, device) -> torch.Tensor:
    """[1, 1, T, S] True where key slot == query slot."""
    q_slot = seq_len - num_tokens + torch.arange(num_tokens, device=device)
    return (torch.arange(seq_len, device=device)[None, :] == q_slot[:, None])[None, None]


class LlamaModel(nn.Module):
    """The whole decoder. Parameter names follow Hugging Face's LlamaForCausalLM, minus the `model.` prefix."""

    inv_freq: torch.Tensor               # a non-persistent buffer (register_buffer below)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.attention: AttentionFn = sdpa_attention

    def _apply(self, fn, recurse=True):
        # `.to(torch.bfloat16)`, `.half()` and `.to_empty()` go through here and would round the RoPE
        # frequencies to 8 mantissa bits (angles off by ~0.5 rad at position 500) or leave them
        # uninitialised; recompute them in float32 on the new device instead.
        super()._apply(fn, recurse)
        self.inv_freq = rope_inv_freq(self.config).to(self.inv_freq.device)
        return self

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, 1, T, head_dim] for positions [B, T], computed in float32 (float64 for a float64
        model: float32's cos can differ by an ulp with the tensor's layout, so a padded batch and a prompt
        alone would differ by ~1e-4 in a float64 test's logits)."""
        work = torch.float64 if dtype == torch.float64 else torch.float32
        angles = positions.to(work)[..., None] * self.inv_freq.to(work)               # [B, T, D/2]
        angles = torch.cat((angles, angles), dim=-1)[:, None]                          # [B, 1, T, D]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                cache: Cache | StaticCacheProtocol | None = None, attention_mask: torch.Tensor | None = None,
                last_only: bool = False, cache_position: torch.Tensor | None = None,
                logits_index: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, num_tokens], got shape {list(input_ids.shape)}")
        batch, num_tokens = input_ids.shape
        mask: torch.Tensor | None
        if cache_position is not None:
            if cache is None:
                raise ValueError("cache_position needs a static cache to write into")
            if positions is None:
                positions = cache_position.expand(batch, -1)
            mask = build_static_mask(cache_position, cast(StaticCacheProtocol, cache).max_len, attention_mask)
        else:
            past_len = cast(Cache, cache).seq_len if cache is not None else 0
            if positions is None:
                positions = (past_len + torch.arange(num_tokens, device=input_ids.device)).expand(batch, -1)
            mask = build_mask(batch, num_tokens, past_len, attention_mask, input_ids.device)
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope(positions, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, cache, self.attention, cache_position)
        if last_only:
            x = x[:, -1:]
        elif logits_index is not None:
            x = x[:, logits_index]                            # [B, k, hidden]: only where a token is sampled
        return self.lm_head(self.norm(x))

    def fuse_projections(self) -> "LlamaModel":
        """Concatenate each layer's q/k/v projections into one `qkv_proj` and gate/up into `gate_up_proj`.

        Same function, fewer and larger matmuls: at batch 1 every projection is a matrix-vector product
        whose launch and tail cost as much as reading a small matrix (k_proj of Llama-3-8B is 8 MB, 3 us
        at 3 TB/s), so engines (vLLM, gpt-fast) store them fused. The originals are removed, so the
        weights are held once; `replace_linears` then sees the fused linears.
        """
        for layer in cast(Iterable[DecoderLayer], self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            attn.qkv_proj = _concat_linears(attn.q_proj, attn.k_proj, attn.v_proj)
            mlp.gate_up_proj = _concat_linears(mlp.gate_proj, mlp.up_proj)
            for module, names in ((attn, ("q_proj", "k_proj", "v_proj")), (mlp, ("gate_proj", "up_proj"))):
                for name in names:
                    delattr(module, name)
        return self

    def replace_linears(self, factory: Callable[[str, Any], nn.Module],
                        kinds: tuple[type[nn.Module], ...] = (nn.Linear,)) -> "LlamaModel":
        """Replace every projection inside the layers by `factory(name, linear)` (lm_head stays); `kinds` are the
        module types that count as projections (a projection already replaced once, for one)."""
        for name, module in list(self.layers.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, kinds):
                    setattr(module, child_name, factory(f"layers.{name}.{child_name}", child))
        return self

    def weight_bytes(self) -> int:
        """Bytes of all parameters and buffers that hold weights, counting a tied embedding once."""
        seen, total = set(), 0
        for t in list(self.parameters()) + list(self.buffers()):
            if t.data_ptr() not in seen and t is not self.inv_freq:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total


def _concat_linears(*linears: nn.Linear) -> nn.Linear:
    """One bias-free linear whose output is the given linears' outputs side by side."""
    weight = torch.cat([linear.weight.detach() for linear in linears], dim=0)    # [sum of N, K]
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    return fused
