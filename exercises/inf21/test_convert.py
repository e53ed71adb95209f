"""inf21 tests: MHA → GQA conversion by mean-pooling each group's K and V heads (Ainslie et al., 2023).

Oracles: group means computed head by head in float64; a model whose KV heads are already equal within
each group, which conversion must leave exactly as it was (pooling equal heads loses nothing); the real
model's own weights and its perplexity on the lab's evaluation text (lab.data, lab.eval).
"""
import math

import pytest
import torch

from lab.impl import Topic
from lab.testing import pick, random_config, random_lab_model


impl = Topic("inf21")
REAL_EVAL_TOKENS = 512                          # one window of the evaluation text: ~1 s per model on a CPU


def group_means(weight: torch.Tensor, num_kv_heads: int, new_num_kv_heads: int) -> torch.Tensor:
    """The oracle, head by head in float64: new head j = mean of old heads j*r .. j*r + r - 1."""
    head_dim, r = weight.shape[0] // num_kv_heads, num_kv_heads // new_num_kv_heads
    heads = weight.double().split(head_dim)                                   # num_kv_heads x [head_dim, hidden]
    return torch.cat([sum(heads[j * r + i] for i in range(r)) / r for j in range(new_num_kv_heads)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_mean_pool_matches_group_means_in_float64(rng, dtype):
    new_num_kv_heads, r = pick(rng, 2, 3), pick(rng, 2, 4)          # 2+ new heads: which old ones pool matters
    num_kv_heads, head_dim, hidden = new_num_kv_heads * r, 2 * pick(rng, 3, 9), pick(rng, 5, 40) | 1
    weight = torch.randn(num_kv_heads * head_dim, hidden, generator=rng).to(dtype)
    before = weight.clone()
    got = impl.convert.mean_pool_kv_heads(weight, num_kv_heads, new_num_kv_heads)
    want = group_means(weight, num_kv_heads, new_num_kv_heads)
    assert got.shape == want.shape and got.dtype == dtype, (
        f"{num_kv_heads} -> {new_num_kv_heads} KV heads of {head_dim}: expected {dtype} {list(want.shape)}, "
        f"got {got.dtype} {list(got.shape)}")
    # One rounding to dtype after a float32 (float64) mean: 2^-8 relative in bf16.
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    err = (got.double() - want).abs().max().item()
    assert err <= tol * (1 + want.abs().max().item()), (
        f"{num_kv_heads} -> {new_num_kv_heads} KV heads: pooled weights differ from the group means by {err:.2e}. "
        f"New head j is the mean of the {r} consecutive old heads j*{r} .. j*{r} + {r - 1} (rows of head i: "
        f"i*head_dim .. (i+1)*head_dim - 1)")
    assert torch.equal(weight, before), "mean_pool_kv_heads modified its input"


def grouped_config(rng):
    """A small random config with 2-3 new KV heads of r = 2-3 old ones each, 1-2 query heads per KV head."""
    new_num_kv_heads, r = pick(rng, 2, 3), pick(rng, 2, 3)
    num_kv_heads = new_num_kv_heads * r
    config = random_config(rng, num_kv_heads=num_kv_heads, num_heads=num_kv_heads * pick(rng, 1, 2),
                           num_layers=pick(rng, 2, 3))
    return config, new_num_kv_heads


def test_conversion_is_exact_when_each_groups_heads_are_equal(rng):
    """Make the KV heads of each future group equal; pooling them then changes nothing: same logits."""
    config, new_num_kv_heads = grouped_config(rng)
    model = random_lab_model(config, rng)
    r, d = config.num_kv_heads // new_num_kv_heads, config.head_dim
    with torch.no_grad():
        for layer in model.layers:
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                w = proj.weight.view(new_num_kv_heads, r, d, -1)
                w.copy_(w[:, :1].expand_as(w).clone())               # every head of a group = its first
    ids = torch.randint(config.vocab_size, (pick(rng, 1, 3), pick(rng, 5, 30)), generator=rng)
    with torch.no_grad():
        want = model(ids)
        converted = impl.convert.convert_to_gqa(model, new_num_kv_heads)
        assert converted.config.num_kv_heads == new_num_kv_heads, \
            f"expected {new_num_kv_heads} KV heads, got config.num_kv_heads={converted.config.num_kv_heads}"
        got = converted(ids)
    err = (got - want).abs().max().item()
    assert err < 1e-4, (
        f"{config.num_heads} query heads, {config.num_kv_heads} -> {new_num_kv_heads} KV heads whose groups were "
        f"already equal: logits changed by up to {err:.2e}. Pool consecutive heads (query head h used KV head "
        "h // group, and consecutive KV heads must land in the same new head)")


def test_conversion_copies_everything_else_and_leaves_the_original(rng):
    config, new_num_kv_heads = grouped_config(rng)
    model = random_lab_model(config, rng)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    converted = impl.convert.convert_to_gqa(model, new_num_kv_heads)
    assert isinstance(converted, type(model)) and converted is not model, "convert_to_gqa must return a new model"
    assert converted.config == config.with_(num_kv_heads=new_num_kv_heads), \
        f"expected config {config.with_(num_kv_heads=new_num_kv_heads)}, got {converted.config}"
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name]), f"convert_to_gqa modified the original model's {name}"
    new_state = converted.state_dict()
    for name, t in before.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            want = group_means(t, config.num_kv_heads, new_num_kv_heads).float()
            assert torch.allclose(new_state[name], want, atol=1e-6), f"{name}: not the group means of the original"
        else:
            assert torch.equal(new_state[name], t), f"{name}: must be the original's weight, unchanged"
            assert new_state[name].data_ptr() != model.state_dict()[name].data_ptr(), \
                f"{name}: the new model must hold its own copy, not share the original's tensor"
    if config.tie_word_embeddings:
        assert converted.lm_head.weight is converted.embed_tokens.weight, "a tied embedding must stay tied"


def test_convert_rejects_head_counts_that_do_not_divide(rng):
    config = random_config(rng, num_kv_heads=3, num_heads=6, num_layers=1)
    model = random_lab_model(config, rng)
    for bad in (2, 0, 6):
        with pytest.raises(ValueError):
            impl.convert.convert_to_gqa(model, bad)
            pytest.fail(f"converting 3 KV heads to {bad} must raise ValueError")
    with pytest.raises(ValueError):
        impl.convert.mean_pool_kv_heads(torch.zeros(3 * 8, 5), 3, 2)


def mean_nll(model, ids: torch.Tensor) -> float:
    """Mean next-token negative log-likelihood (nats) over one window, summed in float64."""
    logits = model(ids[None])[0, :-1].double()
    return torch.nn.functional.cross_entropy(logits, ids[1:]).item()


@pytest.mark.slow
def test_real_model_converted_to_mqa(real_model, tokenizer, record_property):
    """SmolLM2-135M's 3 KV heads mean-pooled to 1 (MQA): the right weights, and the price without uptraining."""
    from lab.data import eval_token_ids

    config = real_model.config
    converted = impl.convert.convert_to_gqa(real_model, 1)
    state = converted.state_dict()
    for i, layer in enumerate(real_model.layers):
        for proj in ("k_proj", "v_proj"):
            want = group_means(getattr(layer.self_attn, proj).weight, config.num_kv_heads, 1)
            got = state[f"layers.{i}.self_attn.{proj}.weight"]
            assert (got.double() - want).abs().max() < 1e-6, f"layer {i} {proj}: not the mean of the 3 KV heads"
    ids = torch.tensor(eval_token_ids(tokenizer, max_tokens=REAL_EVAL_TOKENS))
    with torch.no_grad():
        nll = {"original": mean_nll(real_model, ids), "mean-pooled MQA": mean_nll(converted, ids)}
        # Keeping only the first head of each group instead (the other choice Ainslie et al. compare), in the
        # converted model's own tensors (a second 0.5 GB model would cost seconds).
        for layer, src in zip(converted.layers, real_model.layers):
            for proj in ("k_proj", "v_proj"):
                getattr(layer.self_attn, proj).weight.copy_(getattr(src.self_attn, proj).weight[:config.head_dim])
        nll["first-head MQA"] = mean_nll(converted, ids)
    ppl = {name: round(math.exp(v), 2) for name, v in nll.items()}
    record_property("perplexity", {**ppl, "tokens": REAL_EVAL_TOKENS})
    assert math.isfinite(nll["mean-pooled MQA"]), f"the converted model's perplexity is not finite: {ppl}"
    assert nll["original"] < nll["mean-pooled MQA"] < nll["first-head MQA"], (
        f"perplexities on {REAL_EVAL_TOKENS} tokens: {ppl}; expected the original best and mean pooling "
        "better than keeping the first head of each group")
