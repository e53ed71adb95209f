"""inf11 hidden tests: other float formats, KL on float32 logits, casts of tied random models, fp16 RMSNorm on a
synthetic massive activation."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lab.impl import Topic
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf11")


@pytest.mark.parametrize("widths", [(11, 52), (4, 3), (6, 9)], ids=["float64", "e4m3-ieee", "e6m9"])
def test_hidden_float_format_of_other_widths(widths):
    """float64 against torch.finfo; IEEE-style formats torch lacks against the formula written out here."""
    e, m = widths
    got = impl.formats.float_format(e, m)
    if widths == (11, 52):
        want = torch.finfo(torch.float64)
        expected = dict(max_value=want.max, min_normal=want.tiny, eps=want.eps)
    else:
        bias = 2 ** (e - 1) - 1
        expected = dict(max_value=(2 - 2.0 ** -m) * 2.0 ** bias,     # the all-ones exponent is reserved
                        min_normal=2.0 ** (1 - bias), eps=2.0 ** -m)
    for field, value in expected.items():
        assert getattr(got, field) == pytest.approx(value, rel=1e-12), \
            f"({e} exponent, {m} mantissa bits): {field} should be {value!r}, got {getattr(got, field)!r}"


def test_hidden_logit_error_on_float32_rows_and_fp16_copies(rng):
    """2-D [tokens, vocab] logits: a float32 reference against an fp16 copy (KL direction matters on peaked
    rows), and float32 logits a hair apart (a KL that float32 arithmetic cannot resolve)."""
    tokens, vocab = pick(rng, 2, 9), 2 * pick(rng, 3000, 12000) + 1
    ref = 6 * torch.randn(tokens, vocab, generator=rng)
    ref[:, :5] += 12                                                 # peaked rows: KL(p||q) != KL(q||p)
    for got in ((ref + 0.5 * torch.randn(tokens, vocab, generator=rng)).half(),
                ref + 2e-4 * torch.randn(tokens, vocab, generator=rng)):
        r64, g64 = ref.double(), got.double()
        p_log, q_log = torch.log_softmax(r64, -1), torch.log_softmax(g64, -1)
        want = {"max_abs": (g64 - r64).abs().max().item(), "mean_abs": (g64 - r64).abs().mean().item(),
                "kl": (p_log.exp() * (p_log - q_log)).sum(-1).mean().item(),
                "top1": (r64.argmax(-1) == g64.argmax(-1)).double().mean().item()}
        err = impl.error.logit_error(ref, got)
        for key, value in want.items():
            assert isinstance(err[key], float), f"{key}: return a Python float"
            assert err[key] == pytest.approx(value, rel=1e-3, abs=1e-12), \
                f"{key} for {got.dtype} logits {[tokens, vocab]}: expected {value:.6g}, got {err[key]:.6g}"


class MatmulDtypes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: dict[str, set] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if "mm" in name or "scaled_dot_product" in name or name.startswith("linear"):
            self.seen.setdefault(name, set()).update(
                a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_hidden_cast_of_a_tied_random_model(rng, dtype):
    """A random model with a tied head and wide GQA: a copy (original untouched), exact bytes, 16-bit matmuls."""
    kv = pick(rng, 1, 2)
    model = random_lab_model(random_config(rng, tie_word_embeddings=True, num_kv_heads=kv, num_heads=4 * kv), rng)
    before = {n: p.clone() for n, p in model.named_parameters()}
    full = impl.cast.weight_bytes(model)
    assert full == 4 * model.config.num_params(), \
        (f"fp32 weight bytes: {4 * model.config.num_params():,} (the tied embedding and head are one tensor), got "
         f"{full:,}")
    half = impl.cast.cast_model(model, dtype)
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[n]), f"the original model's {n} changed: cast a copy"
    assert half.lm_head.weight.data_ptr() == half.embed_tokens.weight.data_ptr(), "the copy must keep the head tied"
    assert impl.cast.weight_bytes(half) == full // 2
    ids = torch.randint(model.config.vocab_size, (3, pick(rng, 1, 13)), generator=rng)
    with torch.inference_mode(), MatmulDtypes() as mode:
        logits = half(ids)
    wrong = {name: sorted(map(str, d)) for name, d in mode.seen.items() if d != {dtype}}
    assert mode.seen and not wrong, f"every matmul should read {dtype} tensors only; these read: {wrong}"
    assert logits.dtype == dtype


def test_hidden_rms_norm_survives_a_synthetic_massive_activation(rng):
    """fp16 rows with one value in the thousands (x^2 past 65,504), plus a single-row 1-D input."""
    dim = 2 * pick(rng, 100, 600) + 1
    x = torch.randn(pick(rng, 2, 4), pick(rng, 2, 7), dim, generator=rng)
    x[..., pick(rng, 0, dim - 1)] = 300 + 3000 * torch.rand(x.shape[:-1], generator=rng)
    weight = 1 + 0.2 * torch.randn(dim, generator=rng)
    eps = 1e-6
    for inp in (x, x[0, 0]):
        for dtype in (torch.float16, torch.bfloat16):
            xd, wd = inp.to(dtype), weight.to(dtype)
            x64 = xd.double()
            want = wd.double() * x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps)
            got = impl.overflow.rms_norm(xd, wd, eps)
            assert got.dtype == dtype and got.shape == xd.shape
            err = (got.double() - want).abs().max().item()
            tol = 4 * torch.finfo(dtype).eps * want.abs().max().item()
            assert torch.isfinite(got).all() and err <= tol, \
                f"{dtype} {list(xd.shape)} with |x| up to {inp.abs().max():.0f}: off by {err:.3g} (allowed {tol:.3g})"
