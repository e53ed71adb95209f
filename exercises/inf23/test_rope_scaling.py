"""inf23 tests: RoPE frequencies under every scaling, against transformers' own RoPE initialisation.

Oracle: `transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS` (and Llama's default RoPE) on a LlamaConfig
with the same numbers, for random configs of odd sizes and for released models' `rope_scaling`; for the
model-level test, transformers' LlamaForCausalLM on the same random weights.
"""
import math

import pytest
import torch

from lab.config import SHAPES, ModelConfig
from lab.impl import Topic
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf23")

# float32 (transformers) against float64 (yours, rounded to float32 by rope_parameters): theta ** (2i/d)
# in float32 is off by up to ~|ln theta| * 6e-8 relative (the exponent's rounding), ~1e-6 for theta 1e6;
# 1e-5 keeps a 10x margin. A wrong formula is off by > 1e-2 on some frequency.
RTOL = 1e-5

# Released models' RoPE settings: (name, head_dim, rope_theta, max_position_embeddings, rope_scaling).
REAL_CONFIGS = [
    ("Llama-3.1-8B", 128, 500_000.0, 131072, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    ("Llama-3.2-1B", 64, 500_000.0, 131072, SHAPES["llama-3.2-1b"].rope_scaling),
    ("Qwen2.5-7B-Instruct, YaRN for 128k", 128, 1_000_000.0, 131072,
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
    ("LongChat-7B-16k (linear)", 128, 10_000.0, 16384, {"type": "linear", "factor": 8.0}),
    ("SmolLM2-135M, dynamic NTK x4", 64, 100_000.0, 8192, {"rope_type": "dynamic", "factor": 4.0}),
    ("SmolLM2-135M, plain", 64, 100_000.0, 8192, None),
]


def hf_rope(head_dim: int, rope_theta: float, max_position_embeddings: int, rope_scaling: dict | None,
            seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """transformers' inverse frequencies and attention factor for these numbers (the oracle)."""
    import transformers
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    transformers.logging.set_verbosity_error()          # YaRN warns when factor != max_pos / original
    scaling = dict(rope_scaling or {})
    if "type" in scaling:
        scaling["rope_type"] = scaling.pop("type")
    config = LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, head_dim=head_dim,
                         max_position_embeddings=max_position_embeddings,
                         rope_parameters={"rope_type": "default", "rope_theta": rope_theta, **scaling})
    kind = config.rope_parameters["rope_type"]
    init = LlamaRotaryEmbedding.compute_default_rope_parameters if kind == "default" else ROPE_INIT_FUNCTIONS[kind]
    inv_freq, attention_factor = init(config, device="cpu", seq_len=seq_len)
    return inv_freq.double(), float(attention_factor)


def assert_close_freqs(got, want, what: str, rtol: float = RTOL) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: expected a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: expected [head_dim // 2] = {list(want.shape)}, got {list(got.shape)}"
    rel = ((got.double() - want) / want).abs()
    worst = int(rel.argmax())
    assert rel.max() < rtol, (
        f"{what}: inv_freq[{worst}] is {got[worst].item():.6e}, transformers gives {want[worst].item():.6e} "
        f"(relative error {rel.max().item():.1e}, allowed {rtol:.1e}); {int((rel >= rtol).sum())} of "
        f"{want.numel()} frequencies differ")


def random_rope(rng) -> tuple[int, float, int]:
    """head_dim (even, often twice an odd number), rope_theta, a trained length."""
    head_dim = 2 * pick(rng, 5, 67)
    rope_theta = float(10 ** (4 + 2.5 * torch.rand(1, generator=rng).item()))   # 1e4 .. 3e6
    return head_dim, rope_theta, pick(rng, 300, 20000)


def random_factor(rng) -> float:
    return round(1.0 + 39.0 * torch.rand(1, generator=rng).item(), 3)


def test_default_inv_freq_matches_transformers(rng):
    for _ in range(5):
        head_dim, theta, length = random_rope(rng)
        want, _ = hf_rope(head_dim, theta, length, None)
        assert_close_freqs(impl.rope_scaling.default_inv_freq(head_dim, theta), want,
                           f"plain RoPE, head_dim {head_dim}, theta {theta:.0f}")


def test_linear_inv_freq_matches_transformers(rng):
    for _ in range(5):
        head_dim, theta, length = random_rope(rng)
        factor = random_factor(rng)
        want, _ = hf_rope(head_dim, theta, length, {"rope_type": "linear", "factor": factor})
        assert_close_freqs(impl.rope_scaling.linear_inv_freq(head_dim, theta, factor), want,
                           f"linear x{factor}, head_dim {head_dim}, theta {theta:.0f}")


def test_dynamic_ntk_matches_transformers_below_and_above_the_trained_length(rng):
    for _ in range(5):
        head_dim, theta, length = random_rope(rng)
        factor = random_factor(rng)
        for seq_len in (None, pick(rng, 1, length), length + pick(rng, 1, 8 * length)):
            want, _ = hf_rope(head_dim, theta, length, {"rope_type": "dynamic", "factor": factor}, seq_len)
            got = impl.rope_scaling.dynamic_ntk_inv_freq(head_dim, theta, factor, length, seq_len)
            assert_close_freqs(got, want, f"dynamic NTK x{factor}, head_dim {head_dim}, theta {theta:.0f}, "
                                          f"trained on {length}, seq_len {seq_len}")


def test_yarn_matches_transformers_with_its_attention_factor(rng):
    for _ in range(6):
        head_dim, theta, length = random_rope(rng)
        factor = random_factor(rng)
        beta_slow = round(0.25 + 2 * torch.rand(1, generator=rng).item(), 3)
        beta_fast = float(pick(rng, 4, 64))
        scaling = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": length,
                   "beta_fast": beta_fast, "beta_slow": beta_slow}
        want, want_factor = hf_rope(head_dim, theta, int(length * factor), scaling)
        what = f"YaRN x{factor}, head_dim {head_dim}, theta {theta:.0f}, L {length}, betas {beta_fast}/{beta_slow}"
        got = impl.rope_scaling.yarn_inv_freq(head_dim, theta, factor, length, beta_fast, beta_slow)
        assert_close_freqs(got, want, what)
        got_factor = impl.rope_scaling.yarn_attention_factor(factor)
        assert abs(got_factor - want_factor) < 1e-9, \
            f"{what}: attention factor {got_factor!r}, transformers gives {want_factor!r} (0.1 ln(factor) + 1)"
    assert impl.rope_scaling.yarn_attention_factor(1.0) == 1.0, "no scaling (factor 1) has attention factor 1"


def test_llama3_matches_transformers(rng):
    for _ in range(6):
        head_dim, theta, length = random_rope(rng)
        factor = random_factor(rng)
        low = round(0.5 + 1.5 * torch.rand(1, generator=rng).item(), 3)
        high = round(low + 0.5 + 6 * torch.rand(1, generator=rng).item(), 3)
        scaling = {"rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
                   "original_max_position_embeddings": length}
        want, _ = hf_rope(head_dim, theta, int(length * factor), scaling)
        got = impl.rope_scaling.llama3_inv_freq(head_dim, theta, factor, low, high, length)
        # In the blend band transformers' float32 error grows: s = (L / wavelen - low) / (high - low) carries
        # inv_freq's relative rounding (~(1 + ln theta) * 6e-8) times L / wavelen / (high - low) <= high / (high -
        # low), and (1 - s) / factor + s turns an error in s into up to `factor` times as much relative error
        # (near s = 0). The sweep's seed 34 (factor 26.8, low/high 1.48/2.73) erred 1.1e-5, over RTOL. Twice the
        # bound: at most ~3e-4 here, while a reversed blend is off by > 1e-2.
        band = 2 * 6e-8 * (1 + math.log(theta)) * (1 + factor * high / (high - low))
        assert_close_freqs(got, want, f"llama3 x{factor}, head_dim {head_dim}, theta {theta:.0f}, L {length}, "
                                      f"low/high {low}/{high}", rtol=max(RTOL, band))


@pytest.mark.parametrize("name, head_dim, theta, max_pos, scaling", REAL_CONFIGS, ids=[c[0] for c in REAL_CONFIGS])
def test_rope_parameters_match_transformers_on_released_configs(name, head_dim, theta, max_pos, scaling, rng):
    config = random_config(rng, head_dim=head_dim, rope_theta=theta, max_position_embeddings=max_pos,
                           rope_scaling=scaling)
    for seq_len in (None, 3 * max_pos + pick(rng, 1, 999)):
        want, want_factor = hf_rope(head_dim, theta, max_pos, scaling, seq_len)
        got, got_factor = impl.rope_scaling.rope_parameters(config, seq_len)
        assert got.dtype == torch.float32, f"{name}: rope_parameters returns float32 frequencies, got {got.dtype}"
        assert_close_freqs(got, want, f"{name}, seq_len {seq_len}")
        assert abs(got_factor - want_factor) < 1e-9, \
            f"{name}: attention factor {got_factor!r}, transformers gives {want_factor!r}"


def test_rope_parameters_rejects_unknown_types_and_missing_keys(rng):
    config = random_config(rng)
    bad = [{"rope_type": "longrope2", "factor": 2.0}, {"rope_type": "yarn", "factor": 2.0},
           {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}, {"rope_type": "linear"}]
    for scaling in bad:
        with pytest.raises(ValueError):
            impl.rope_scaling.rope_parameters(config.with_(rope_scaling=scaling))
    with pytest.raises(ValueError):
        impl.rope_scaling.linear_inv_freq(config.head_dim, config.rope_theta, 0.5)
    with pytest.raises(ValueError):
        impl.rope_scaling.default_inv_freq(7, config.rope_theta)


def hf_twin(model, rope_scaling: dict):
    """transformers' LlamaForCausalLM on the lab model's weights, with `rope_scaling` (float64, CPU)."""
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    transformers.logging.set_verbosity_error()
    c: ModelConfig = model.config
    hf_config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim, max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        tie_word_embeddings=c.tie_word_embeddings, rope_parameters={"rope_theta": c.rope_theta, **rope_scaling},
        bos_token_id=None, eos_token_id=None, pad_token_id=0, attn_implementation="eager")
    hf = LlamaForCausalLM(hf_config)
    state = {name if name == "lm_head.weight" else f"model.{name}": t for name, t in model.state_dict().items()}
    hf.load_state_dict(state, strict=False)
    if c.tie_word_embeddings:
        hf.tie_weights()
    return hf.double().eval()


@pytest.mark.parametrize("kind", ["yarn", "dynamic", "llama3"])
def test_scaled_rope_in_the_model_matches_transformers(rng, kind):
    """A random float64 model run past its trained length with your scaled RoPE: the logits of transformers."""
    config = random_config(rng, max_position_embeddings=pick(rng, 9, 23), num_layers=2)
    config = config.with_(hidden_size=config.num_heads * (pick(rng, 4, 12) | 1))   # transformers wants a multiple
    original = config.max_position_embeddings
    factor = round(2 + 6 * torch.rand(1, generator=rng).item(), 2)
    scaling = {"yarn": {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original},
               "dynamic": {"rope_type": "dynamic", "factor": factor},
               "llama3": {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": original}}[kind]
    model = random_lab_model(config, rng, torch.float64)
    seq_len = original * pick(rng, 2, 4) + pick(rng, 0, 5)
    ids = torch.randint(config.vocab_size, (pick(rng, 1, 2), seq_len), generator=rng)
    hf = hf_twin(model, scaling)
    with torch.no_grad():
        want = hf(ids).logits
        got = impl.rope_scaling.use_scaled_rope(model, scaling, seq_len=seq_len)(ids)
    # transformers computes the angles and cos/sin in float32 even for a float64 model: ~2e-6 apart at
    # 100 positions (measured); a missing attention factor or a wrong band is off by > 1e-2.
    err = (got - want).abs().max().item()
    assert err < 1e-4, (f"{kind} x{factor}, trained length {original}, {seq_len} tokens: logits differ from "
                        f"transformers' by up to {err:.2e} (float64, expected < 1e-4)"
                        + ("; did you apply YaRN's attention factor?" if kind == "yarn" else ""))
