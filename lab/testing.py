"""Test aids shared by the topics' tests: small random models, reference caches, fake models.

Everything here is deliberately simple, so that it can serve as an oracle: a test compares the
student's fast code with these slow, obviously-right versions. Import them all from here; the larger
groups live in modules of their own:
- lab.outcomes: `not_graded(reason)` (not graded on this hardware), `raises(..., because=...)`;
- lab.harness: `kernel_check` (a Triton kernel on a GPU or in the interpreter), `cuda_graph_replay`;
- lab.fakes: models that record or script what a loop sees (`ScriptedModel`, `SleepyModel`, `Recording`,
  `Spy`, `FakeCachedModel`), `SlowCopies`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from lab.config import ModelConfig
from lab.fakes import FakeCachedModel, Recording, ScriptedModel, SleepyModel, SlowCopies, Spy
from lab.harness import cuda_graph_replay, kernel_check
from lab.model import LlamaModel
from lab.outcomes import not_graded, raises

__all__ = ["pick", "call_keeping_inputs", "random_config", "random_lab_model", "ConcatCache", "naive_attention",
           "ScriptedModel", "SleepyModel", "Recording", "Spy", "FakeCachedModel", "SlowCopies",
           "kernel_check", "cuda_graph_replay", "not_graded", "raises"]


def pick(gen: torch.Generator, lo: int, hi: int) -> int:
    """A random int in [lo, hi], both ends included, from the test's seeded generator (odd sizes)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _snapshot(value):
    """A copy of an argument's tensors and containers (lists, tuples, dicts); other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value] if isinstance(value, list) else tuple(map(_snapshot, value))
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def _changed(old, now, path: str) -> str | None:
    """Where `now` differs from its snapshot `old` (None if nowhere): tensors, containers, plain values."""
    if isinstance(old, torch.Tensor):
        ok = isinstance(now, torch.Tensor) and _same(now.detach(), old)
        return None if ok else f"{path} ({old.dtype} {list(old.shape)})"
    if isinstance(old, (list, tuple)):
        if len(now) != len(old):
            return f"{path} (its length went from {len(old)} to {len(now)})"
        for i, (a, b) in enumerate(zip(old, now)):
            found = _changed(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(old, dict):
        if set(old) != set(now):
            return f"{path} (its keys)"
        return next((f for k in old if (f := _changed(old[k], now[k], f"{path}[{k!r}]"))), None)
    if isinstance(old, (int, float, str, bool, type(None))):
        return None if old == now else path
    return None


def call_keeping_inputs(fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, failing if it changed any input in place: tensors, and lists, tuples and dicts
    (of tensors or plain values, e.g. prompts as lists of token ids). Call a student's function through this
    whenever the test's oracle reads the same inputs afterwards: a changed input would move the oracle along
    with the answer, or blame the oracle for the student's mistake.

        got = call_keeping_inputs(impl.error.logit_error, ref, got)
    """
    named = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    before = [(name, arg, _snapshot(arg)) for name, arg in named]
    result = fn(*args, **kwargs)
    what = getattr(fn, "__qualname__", None) or type(fn).__name__
    for name, arg, old in before:
        where = _changed(old, arg, name)
        assert where is None, (f"{what} changed its input {where} in place: never change the caller's tensors or "
                               "lists (a .float() or .to() of a tensor already in that dtype is the same tensor; "
                               "clone or copy before writing into it)")
    return result


def random_config(gen: torch.Generator, **overrides) -> ModelConfig:
    """A small Llama config with odd sizes (odd vocab, odd layer count, GQA groups of 1 to 3)."""
    def pick(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))
    num_kv_heads = pick(1, 3)
    head_dim = 2 * pick(4, 12)
    fields: dict[str, Any] = dict(name="random", vocab_size=2 * pick(50, 150) + 1, hidden_size=pick(24, 72) | 1,
                  intermediate_size=pick(40, 120) | 1, num_layers=pick(1, 3), num_heads=num_kv_heads * pick(1, 3),
                  num_kv_heads=num_kv_heads, head_dim=head_dim, rope_theta=10_000.0,
                  max_position_embeddings=512, tie_word_embeddings=bool(pick(0, 1)))
    fields.update(overrides)
    return ModelConfig(**fields)


def random_lab_model(config: ModelConfig, gen: torch.Generator, dtype=torch.float32) -> LlamaModel:
    """The lab model with N(0, 1/fan_in) weights drawn from `gen` (reproducible), in eval mode."""
    model = LlamaModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    return model.to(dtype).eval()


class ConcatCache:
    """The naive KV cache: `torch.cat` the new K/V onto the old at every step (O(n^2) copying).

    Follows `lab.model.Cache`. An oracle and a baseline, not something to ship.
    """

    def __init__(self, num_layers: int):
        self.k: list[torch.Tensor | None] = [None] * num_layers
        self.v: list[torch.Tensor | None] = [None] * num_layers

    @property
    def seq_len(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        old_k, old_v = self.k[layer_idx], self.v[layer_idx]
        self.k[layer_idx] = k if old_k is None else torch.cat([old_k, k], dim=2)
        self.v[layer_idx] = v if old_v is None else torch.cat([old_v, v], dim=2)
        return self.k[layer_idx], self.v[layer_idx]


@torch.inference_mode()
def greedy_alone(model, prompt, max_new_tokens, eos_token_id=None):
    """The oracle of the serving topics: one prompt alone, no padding, packing or mask, through a ConcatCache.
    Greedy until `max_new_tokens` or right after `eos_token_id`. Returns (tokens, logits [steps, vocab])."""
    device = next(model.parameters()).device
    cache, ids = ConcatCache(model.config.num_layers), torch.tensor([list(prompt)], device=device)
    tokens, logits = [], []
    for _ in range(max_new_tokens):
        logits.append(model(ids, cache=cache, last_only=True)[0, -1])
        tokens.append(int(logits[-1].argmax()))
        ids = logits[-1].argmax().view(1, 1)
        if tokens[-1] == eos_token_id:
            break
    return tokens, torch.stack(logits)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention by the book: repeat KV heads, softmax(QK^T / sqrt(d)) V, masked slots at -inf."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


class LargestTensor:
    """What `largest_new_tensor` saw: `numel` and `shape` of the largest tensor an op created in the block."""

    def __init__(self):
        self.numel: int = 0
        self.shape: tuple[int, ...] = ()


@contextlib.contextmanager
def largest_new_tensor():
    """Watch every tensor that torch functions return inside the block (CPU or GPU) and keep the largest:

        with largest_new_tensor() as largest:
            out = impl.online_softmax.tiled_attention(q, k, v)
        assert largest.numel < q_len * kv_len, f"a [{largest.shape}] tensor: the whole score matrix"

    A deterministic stand-in for peak memory where the device has no allocator statistics (the CPU). It sees
    what Python-level torch calls return (a TorchFunctionMode: cheap, unlike a dispatch mode's first use).
    """
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    largest = LargestTensor()

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.numel() > largest.numel:
                    largest.numel, largest.shape = t.numel(), tuple(t.shape)
            return out

    with Watch():
        yield largest


@dataclass
class TritonLaunches:
    """What `count_triton_launches` saw: `count` launches, of the kernels named in `kernels` (in order)."""

    count: int = 0
    kernels: list[str] = field(default_factory=list)


@contextlib.contextmanager
def count_triton_launches():
    """Count the Triton kernel launches (`kernel[grid](...)`, an autotuner's included) made inside the block.

        with count_triton_launches() as launches:
            out = impl.int8_matmul.w8a8_matmul_triton(xq, x_scale, wq, w_scale)
        assert launches.count >= 1, "w8a8_matmul_triton launched no Triton kernel"

    Works natively (a `triton.runtime.jit.JITFunction` run) and under the Triton interpreter
    (`TRITON_INTERPRET=1`, an `InterpretedFunction` run, as in lab.triton_interpreter's child process).
    Warm-up compilations (`kernel.warmup(...)`) are not launches. It proves that some Triton kernel ran,
    not which work it did: the tests still compare the outputs with an oracle.
    """
    try:
        from triton.runtime import jit
    except ImportError:
        raise RuntimeError("count_triton_launches needs Triton: pip install triton") from None
    classes = [jit.JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction
        classes.append(InterpretedFunction)
    except ImportError:         # a Triton without the interpreter: native launches only
        pass
    seen = TritonLaunches()

    def counting(original):
        def run(self, *args, **kwargs):
            if not kwargs.get("warmup", False):
                seen.count += 1
                fn = getattr(self, "fn", None)
                seen.kernels.append(str(getattr(fn, "__name__", None) or getattr(self, "__name__", "kernel")))
            return original(self, *args, **kwargs)
        return run

    saved = [(cls, cls.__dict__.get("run")) for cls in classes]
    try:
        for cls in classes:
            cls.run = counting(cls.run)
        yield seen
    finally:
        for cls, original in reversed(saved):
            if original is None:
                del cls.run
            else:
                cls.run = original
