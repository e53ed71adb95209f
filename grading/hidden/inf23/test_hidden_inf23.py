"""inf23 hidden tests: old-style and explicit RoPE keys, linear scaling in the model, window 1, bf16 attention,
a batch decoding through several wraps."""
import torch

from exercises.inf23.test_rope_scaling import assert_close_freqs, hf_rope, hf_twin, random_factor, random_rope
from exercises.inf23.test_sliding_window import gqa_config, masked_attention_f64, ring_decode_logits, windowed
from lab.impl import Topic
from lab.testing import pick, random_config, random_lab_model

impl = Topic("inf23")


def test_hidden_rope_parameters_with_old_type_key_and_explicit_yarn_keys(rng):
    """The pre-2024 key "type", YaRN with an explicit attention_factor, and YaRN with default betas."""
    for _ in range(3):
        head_dim, theta, length = random_rope(rng)
        factor = random_factor(rng)
        for scaling in ({"type": "dynamic", "factor": factor},
                        {"type": "yarn", "factor": factor, "original_max_position_embeddings": length,
                         "attention_factor": round(1 + torch.rand(1, generator=rng).item(), 3)},
                        {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": length}):
            config = random_config(rng, head_dim=head_dim, rope_theta=theta, max_position_embeddings=length,
                                   rope_scaling=scaling)
            seq_len = length + pick(rng, 1, 5 * length)
            want, want_factor = hf_rope(head_dim, theta, length, scaling, seq_len)
            got, got_factor = impl.rope_scaling.rope_parameters(config, seq_len)
            assert_close_freqs(got, want, f"{scaling}, head_dim {head_dim}, theta {theta:.0f}")
            assert abs(got_factor - want_factor) < 1e-9, \
                f"{scaling}: attention factor {got_factor!r}, transformers gives {want_factor!r}"


def test_hidden_linear_scaling_in_the_model_matches_transformers(rng):
    config = random_config(rng, max_position_embeddings=pick(rng, 9, 23), num_layers=2)
    config = config.with_(hidden_size=config.num_heads * (pick(rng, 4, 12) | 1))
    scaling = {"rope_type": "linear", "factor": round(1.5 + 6 * torch.rand(1, generator=rng).item(), 2)}
    model = random_lab_model(config, rng, torch.float64)
    ids = torch.randint(config.vocab_size, (2, 3 * config.max_position_embeddings), generator=rng)
    hf = hf_twin(model, scaling)
    with torch.no_grad():
        want = hf(ids).logits
        got = impl.rope_scaling.use_scaled_rope(model, scaling)(ids)
    err = (got - want).abs().max().item()
    assert err < 1e-4, f"linear x{scaling['factor']}: logits differ from transformers' by up to {err:.2e}"


def test_hidden_window_of_one_token(rng):
    """Window 1: each token sees only itself; the ring has one slot."""
    config = gqa_config(rng, num_layers=2)
    model = random_lab_model(config, rng, torch.float64)
    ids = torch.randint(config.vocab_size, (pick(rng, 1, 3), pick(rng, 8, 15)), generator=rng)
    with torch.no_grad():
        want = windowed(model, 1)(ids)
    got = ring_decode_logits(model, ids, pick(rng, 1, 5), 1)
    err = (got - want).abs().max().item()
    assert err < 1e-9, f"window 1: logits differ from masked full attention by up to {err:.2e}"


def test_hidden_sliding_window_attention_in_bf16(rng):
    for _ in range(4):
        num_kv_heads, groups, num_keys = pick(rng, 1, 4), pick(rng, 1, 4), pick(rng, 5, 80)
        num_queries, window = pick(rng, 1, num_keys), pick(rng, 1, num_keys)
        q = torch.randn(2, num_kv_heads * groups, num_queries, 64, generator=rng).bfloat16()
        k = torch.randn(2, num_kv_heads, num_keys, 64, generator=rng).bfloat16()
        v = torch.randn(2, num_kv_heads, num_keys, 64, generator=rng).bfloat16()
        want = masked_attention_f64(q, k, v, None, window)
        got = impl.sliding_window.sliding_window_attention(q.clone(), k.clone(), v.clone(), None, window)
        assert got.dtype == torch.bfloat16, f"bf16 in, bf16 out; got {got.dtype}"
        err = (got.double() - want).abs().max().item()
        assert err < 3e-2, f"bf16, {num_queries} queries, {num_keys} keys, window {window}: off by {err:.2e}"


def test_hidden_batch_decodes_through_many_wraps(rng):
    config = gqa_config(rng, num_layers=3)
    window = pick(rng, 3, 5)
    model = random_lab_model(config, rng, torch.float64)
    ids = torch.randint(config.vocab_size, (4, window + 6 * window + pick(rng, 1, 4)), generator=rng)
    with torch.no_grad():
        want = windowed(model, window)(ids)
    got = ring_decode_logits(model, ids, window, window)
    err = (got - want).abs().max().item()
    assert err < 1e-9, f"batch 4, window {window}, prompt = window, 6 wraps: logits differ by up to {err:.2e}"
