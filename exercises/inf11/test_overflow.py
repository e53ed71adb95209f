"""inf11 tests: finding the residual stream's massive activations, and an RMSNorm that survives them in fp16.

Oracles: the decoder run layer by layer here; RMSNorm in float64; the real model's own activations.
"""
import pytest
import torch

from lab.impl import Topic
from lab.model import build_mask
from lab.testing import call_keeping_inputs, pick, raises, random_config, random_lab_model

impl = Topic("inf11")
# rms_norm is yours to write: torch's and the lab model's RMSNorm may not stand in for it. Only the
# rms_norm tests ban them: the residual_absmax tests run the model (and its RMSNorm) through your code.


@torch.inference_mode()
def layer_outputs(model, ids) -> list[torch.Tensor]:
    """The residual stream after each decoder layer, by running the layers one by one."""
    batch, num_tokens = ids.shape
    x = model.embed_tokens(ids)
    cos, sin = model.rope(torch.arange(num_tokens).expand(batch, -1), x.dtype)
    mask = build_mask(batch, num_tokens, 0, None, ids.device)
    outputs = []
    for layer in model.layers:
        x = layer(x, cos, sin, mask, None, model.attention)
        outputs.append(x)
    return outputs


def hooks_left(model) -> list[str]:
    return [name or "model" for name, m in model.named_modules()
            if m._forward_hooks or m._forward_pre_hooks]


def test_residual_absmax_matches_a_layer_by_layer_run(rng):
    model = random_lab_model(random_config(rng, num_layers=pick(rng, 2, 4)), rng)
    with torch.no_grad():                                  # make one layer's output stand out
        model.layers[-1].mlp.down_proj.weight.mul_(30)
    ids = torch.randint(model.config.vocab_size, (pick(rng, 1, 3), pick(rng, 4, 17)), generator=rng)
    got = impl.overflow.residual_absmax(model, ids)
    want = [x.abs().max().item() for x in layer_outputs(model, ids)]
    assert isinstance(got, list) and len(got) == len(want), \
        f"expected a list of {len(want)} floats (one per layer), got {type(got).__name__} of {len(got)}"
    assert got == pytest.approx(want, rel=1e-5), f"max |residual| per layer: expected {want}, got {got}"
    assert not hooks_left(model), f"remove your hooks after the forward; still attached to {hooks_left(model)}"


class Boom(Exception):
    pass


def test_residual_absmax_removes_its_hooks_when_the_forward_fails(rng):
    model = random_lab_model(random_config(rng), rng)

    def explode(x):
        raise Boom("the forward fails after the last layer")
    model.norm.forward = explode
    ids = torch.randint(model.config.vocab_size, (1, 5), generator=rng)
    with raises(Boom,
                because="the model's forward raises: residual_absmax must let the error through (and remove its "
                        "hooks)"):
        impl.overflow.residual_absmax(model, ids)
    assert not hooks_left(model), f"a failed forward left hooks on {hooks_left(model)}: remove them in `finally`"


def rms_norm_float64(x, weight, eps):
    x64 = x.double()
    return weight.double() * x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_rms_norm_matches_float64(rng, dtype):
    shape = (pick(rng, 1, 3), pick(rng, 2, 9), 2 * pick(rng, 20, 200) + 1)
    x = (3 * torch.randn(shape, generator=rng)).to(dtype)
    weight = (1 + 0.2 * torch.randn(shape[-1], generator=rng)).to(dtype)
    want = rms_norm_float64(x, weight, 1e-5)         # before the call, which must leave x and weight alone
    got = call_keeping_inputs(impl.overflow.rms_norm, x, weight, 1e-5)
    assert got.dtype == dtype and got.shape == x.shape, \
        f"expected {dtype} {list(x.shape)}, got {got.dtype} {list(got.shape)}"
    tol = 4 * torch.finfo(dtype).eps * want.abs().max().item()     # two roundings to `dtype`
    err = (got.double() - want).abs().max().item()
    assert err <= tol, f"{dtype}: off from the float64 RMSNorm by {err:.3g} (allowed {tol:.3g})"


def test_rms_norm_survives_the_real_models_massive_activation_in_fp16(real_model, tokenizer):
    """The case where fp16 overflows and bf16 does not: the real model's residual stream after the layer with
    the largest value, normalized by the next layer's RMSNorm weight, in fp16 and bf16."""
    ids = torch.tensor([tokenizer.encode("The capital of France is Paris. The capital of Italy is")])
    outputs = layer_outputs(real_model, ids)
    layer = max(range(len(outputs) - 1), key=lambda i: outputs[i].abs().max().item())
    x, peak = outputs[layer], outputs[layer].abs().max().item()
    assert peak ** 2 > torch.finfo(torch.float16).max, f"premise: a value over 256 in the residual, got {peak:.0f}"
    weight, eps = real_model.layers[layer + 1].input_layernorm.weight, real_model.config.rms_norm_eps
    want = rms_norm_float64(x, weight, eps)
    for dtype in (torch.float16, torch.bfloat16):
        squares = x.to(dtype).pow(2)                      # what a norm computed in `dtype` would square
        assert torch.isinf(squares).any() == (dtype == torch.float16), "premise: x^2 overflows fp16 only"
        got = call_keeping_inputs(impl.overflow.rms_norm, x.to(dtype), weight.to(dtype), eps)
        err = (got.double() - want).abs().max().item()
        tol = 4 * torch.finfo(dtype).eps * want.abs().max().item()
        assert torch.isfinite(got).all() and err <= tol, (
            f"layer {layer} of the real model holds |x| = {peak:,.0f}; x^2 = {peak ** 2:.2e} is past fp16's "
            f"65,504. Your {dtype} RMSNorm is off by {err:.3g} (allowed {tol:.3g}): compute mean(x^2) in fp32")
