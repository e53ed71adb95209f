"""The lab's real model, tokenizer and random models against independent references.

- the decoder with the dequantized GGUF weights (lab.weights) against transformers loading the same file
  on its own (lab.oracle): logits and greedy tokens;
- the tokenizer built from the GGUF metadata (lab.tokenizer) against transformers' GGUF tokenizer and
  llama.cpp's `smollm` pre-tokenizer rule (every digit on its own);
- random models of real shapes: parameter counts, finite activations, determinism;
- the weight cache: built once, atomically, then reused.
"""
from __future__ import annotations

import math
import re
import time

import pytest
import torch

from lab.config import SHAPES
from lab.data import PROMPTS, chat_prompt, eval_text, eval_token_ids
from lab.eval import kl_divergence, perplexity, top1_agreement
from lab.model import LlamaModel
from lab.testing import greedy_alone
from lab.tokenizer import load_tokenizer
from lab.weights import (check_config, gguf_config_values, gguf_path, gguf_reader, load_real_model,
                         random_model, unpermute_qk)

# fp32 on both sides, same weights: the only difference is the order of floating-point operations
# (fused SDPA vs transformers' attention, matmul blocking), ~1e-7 relative per op. Over 30 layers we
# measured a max |diff| of 8e-5 on logits of magnitude ~40 (2e-6 relative). A conversion bug (a q/k
# permutation left in, a transposed weight, a wrong RoPE base) moves logits by whole units, so a
# tolerance of 1e-4 of the logit scale (~4e-3) is 50x the noise and far below any real defect.
LOGIT_RTOL = 1e-4
GREEDY_TOKENS = 32


@pytest.fixture(scope="module")
def lab_tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def lab_model():
    return load_real_model()


@pytest.fixture(scope="module")
def hf_model():
    from lab.oracle import load_hf_model
    return load_hf_model()


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer
    path = gguf_path()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def lab_greedy(model: LlamaModel, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding through the simplest cache (lab.testing.greedy_alone: torch.cat, nothing to get wrong)."""
    return greedy_alone(model, prompt_ids, max_new_tokens)[0]


# ---------------------------------------------------------------- the real model vs transformers

@torch.no_grad()
def test_logits_match_transformers(lab_model, hf_model, lab_tokenizer):
    texts = {"chat": chat_prompt(PROMPTS[0], lab_tokenizer), "plain": PROMPTS[3]}
    inputs = {name: lab_tokenizer.encode(text) for name, text in texts.items()}
    inputs["eval text, 300 tokens"] = eval_token_ids(lab_tokenizer, max_tokens=300)   # RoPE far from 0
    for name, ids in inputs.items():
        x = torch.tensor([ids])
        ours, ref = lab_model(x)[0], hf_model(x).logits[0]
        max_diff, scale = (ours - ref).abs().max().item(), ref.abs().max().item()
        print(f"{name}: {len(ids)} tokens, max |logit diff| {max_diff:.2e} (max |logit| {scale:.1f}), "
              f"KL {kl_divergence(ref, ours):.1e}")
        assert max_diff <= LOGIT_RTOL * scale, (
            f"{name}: logits differ from transformers by up to {max_diff:.3g} (allowed {LOGIT_RTOL * scale:.3g}); "
            "check the GGUF conversion in lab/weights.py (q/k un-permutation, tensor names) and lab/model.py")
        assert top1_agreement(ref, ours) == 1.0, f"{name}: the most likely next token differs somewhere"


@pytest.mark.parametrize("prompt_index", [1, 2, 4])
def test_greedy_tokens_match_transformers(lab_model, lab_tokenizer, prompt_index):
    from lab.oracle import hf_greedy
    prompt_ids = lab_tokenizer.encode(chat_prompt(PROMPTS[prompt_index], lab_tokenizer))
    expected = hf_greedy(prompt_ids, GREEDY_TOKENS)
    got = lab_greedy(lab_model, prompt_ids, GREEDY_TOKENS)
    first_diff = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
    assert got == expected, (f"{PROMPTS[prompt_index]!r}: greedy tokens split from transformers' at step "
                             f"{first_diff}: {lab_tokenizer.decode(got)!r} vs {lab_tokenizer.decode(expected)!r}")


# ---------------------------------------------------------------- perplexity (lab.eval)

class UniformModel(torch.nn.Module):
    """Predicts every token with probability 1 / vocab_size, whatever the context."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        return torch.zeros(*input_ids.shape, self.vocab_size)


@torch.no_grad()
def test_perplexity_scores_every_token_once():
    # log-softmax runs in float32 (1e-7 relative); the sums in float64
    assert perplexity(UniformModel(100), list(range(37)), window=8, stride=3) == pytest.approx(100, rel=1e-6)
    tiny = SHAPES["smollm2-135m"].with_(name="tiny", vocab_size=100, hidden_size=64, intermediate_size=128,
                                        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)
    model = random_model(tiny, dtype=torch.float32, seed=3)
    ids = torch.randint(0, 100, (37,), generator=torch.Generator().manual_seed(3))

    def nll(chunk):   # summed over chunk[1:], each predicted from the tokens before it in the chunk
        logp = torch.log_softmax(model(chunk[None])[0, :-1].double(), -1)
        return -logp.gather(-1, chunk[1:, None]).sum().item(), chunk.numel() - 1
    whole = nll(ids)
    assert perplexity(model, ids, window=64, stride=5) == pytest.approx(math.exp(whole[0] / whole[1]), rel=1e-6)
    parts = [nll(ids[i:i + 8]) for i in range(0, 37, 8) if ids[i:i + 8].numel() > 1]
    expected = math.exp(sum(p[0] for p in parts) / sum(p[1] for p in parts))
    assert perplexity(model, ids, window=8, stride=8) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, ids, window=8, stride=9)


# ---------------------------------------------------------------- the GGUF conversion

def llama_cpp_permute(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`: halves RoPE layout -> pairs layout."""
    rows = weight.shape[0]
    return weight.reshape(num_heads, 2, rows // num_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def test_the_evaluation_text_ships_with_the_lab_and_its_license(tmp_path, monkeypatch):
    """Every perplexity figure rests on this exact text (lab/texts/), whatever Python runs the lab."""
    import hashlib

    import lab.data as data
    text = eval_text()
    assert hashlib.sha256(text.encode()).hexdigest() == data.EVAL_TEXT_SHA256 and len(text) == 18_584
    assert text.startswith("Objects, values and types") and "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in \
        (data.EVAL_TEXT_FILE.parent / "LICENSE-PSF.txt").read_text()
    changed = tmp_path / "text.txt"
    changed.write_text(text.replace("\n", "\r\n"))              # what a line-ending conversion would do
    monkeypatch.setattr(data, "EVAL_TEXT_FILE", changed)
    data.eval_text.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="is not the lab's evaluation text"):
            data.eval_text()
    finally:
        data.eval_text.cache_clear()


@pytest.mark.parametrize("num_heads", [9, 3])
def test_unpermute_inverts_llama_cpp_permute(num_heads):
    weight = torch.randn(num_heads * 64, 576)
    assert torch.equal(unpermute_qk(llama_cpp_permute(weight, num_heads), num_heads), weight)
    # and it is not the identity: rows really move
    assert not torch.equal(unpermute_qk(weight, num_heads), weight)


def test_config_checked_against_gguf_metadata():
    values = gguf_config_values(gguf_reader())
    check_config(SHAPES["smollm2-135m"], values)   # agrees: no error
    with pytest.raises(RuntimeError, match="rope_theta"):
        check_config(SHAPES["smollm2-135m"].with_(rope_theta=10_000.0), values)


def test_weight_cache_is_built_once_then_reused(tmp_path, monkeypatch, lab_model):
    import lab.weights
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    start = time.perf_counter()
    first = load_real_model()
    first_s = time.perf_counter() - start
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".safetensors"), f"expected one cache file, found {files}"

    def no_dequantizing(*args, **kwargs):
        raise AssertionError("the GGUF file was dequantized again although the cache holds its weights")
    monkeypatch.setattr(lab.weights, "dequantize_gguf", no_dequantizing)
    start = time.perf_counter()
    second = load_real_model()
    second_s = time.perf_counter() - start
    print(f"load_real_model: {first_s:.1f} s building the cache, {second_s:.1f} s from it")
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(),
                               lab_model.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c), f"{name} differs between loads"
    assert second_s < first_s, f"the cached load ({second_s:.1f} s) should beat the first ({first_s:.1f} s)"


# ---------------------------------------------------------------- the tokenizer

def test_digits_are_split_one_by_one(lab_tokenizer):
    ids = lab_tokenizer.encode("12345")
    assert [lab_tokenizer.token(i) for i in ids] == list("12345"), f"expected one token per digit, got {ids}"
    # llama.cpp's `smollm` splits digits off first, so whitespace before a number stays one token;
    # transformers' GGUF tokenizer (no digit split) gives ['x', 'Ġ', 'Ġ', '1', '2'] here.
    assert [lab_tokenizer.token(i) for i in lab_tokenizer.encode("x  12")] == ["x", "ĠĠ", "1", "2"]


def test_round_trip_is_lossless(lab_tokenizer):
    for text in [eval_text(), *PROMPTS, "naïve café, 東京, emoji 🚀, tabs\tand\n\nnewlines  "]:
        assert lab_tokenizer.decode(lab_tokenizer.encode(text)) == text, f"decode(encode(x)) != x for {text[:40]!r}..."


def test_ids_match_transformers_where_no_digits(lab_tokenizer, hf_tokenizer):
    texts = [re.sub(r"\d", "", eval_text()), *PROMPTS, "  indented\n\tcode()  ", chat_prompt("Hi!", lab_tokenizer)]
    for text in texts:
        ours, ref = lab_tokenizer.encode(text), hf_tokenizer.encode(text, add_special_tokens=False)
        assert ours == ref, f"ids differ from transformers' GGUF tokenizer on {text[:40]!r}..."


def test_chat_template_and_special_ids_match_transformers(lab_tokenizer, hf_tokenizer):
    for messages in ([{"role": "user", "content": "Hi"}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]):
        for add in (True, False):
            assert lab_tokenizer.apply_chat_template(messages, add_generation_prompt=add) == \
                hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add)
    assert lab_tokenizer.encode("<|im_start|>") == [1] and lab_tokenizer.eos_token_id == 2 == lab_tokenizer.pad_token_id
    assert lab_tokenizer.vocab_size == SHAPES["smollm2-135m"].vocab_size
    with pytest.raises(ValueError, match="role"):
        lab_tokenizer.apply_chat_template(["Hi"])


# ---------------------------------------------------------------- random models of real shapes

@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_random_model_parameter_count_matches_config(shape):
    model = random_model(shape, device="meta")     # nothing allocated, even for 8B
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == SHAPES[shape].num_params()
    assert (model.lm_head.weight is model.embed_tokens.weight) == SHAPES[shape].tie_word_embeddings


def test_first_layers_keeps_every_width_and_cuts_only_the_layers():
    """inf12's GPU speed test runs the 1B shape's first 4 layers: same widths, heads and vocabulary."""
    from dataclasses import asdict

    from lab.config import first_layers
    whole, cut = asdict(SHAPES["llama-3.2-1b"]), asdict(first_layers("llama-3.2-1b", 4))
    assert cut.pop("num_layers") == 4 and whole.pop("num_layers") == 16
    assert cut.pop("name") == "llama-3.2-1b (first 4 of 16 layers)" and whole.pop("name") == "llama-3.2-1b"
    assert cut == whole
    assert len(random_model(first_layers("llama-3.2-1b", 4), device="meta").layers) == 4
    for bad in (0, 17):
        with pytest.raises(ValueError, match="has 16 layers"):
            first_layers("llama-3.2-1b", bad)


@torch.no_grad()
def test_random_model_is_deterministic_finite_and_not_degenerate():
    model = random_model("smollm2-135m", dtype=torch.bfloat16, seed=1)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.inv_freq.dtype == torch.float32, "RoPE frequencies must stay float32 in a bf16 model"
    assert torch.equal(model.layers[0].self_attn.q_proj.weight,
                       random_model("smollm2-135m", seed=1).layers[0].self_attn.q_proj.weight)
    logits = model(torch.randint(0, model.config.vocab_size, (2, 17))).float()
    assert torch.isfinite(logits).all()
    assert 0.1 < logits.std().item() < 10, f"logit std {logits.std().item():.3g}: degenerate initialisation"
    assert logits.argmax(-1).unique().numel() > 1, "every position predicts the same token"


def test_fused_projections_compute_the_same_function():
    """fuse_projections (one qkv and one gate-up matmul per layer) changes the layout, not the model:
    float64 logits equal to rounding, the same weight bytes, and every other seam (replace_linears) sees
    the fused linears."""
    from lab.testing import random_config, random_lab_model
    gen = torch.Generator().manual_seed(1234)
    config = random_config(gen, num_layers=2)
    model = random_lab_model(config, gen, torch.float64)
    ids = torch.randint(config.vocab_size, (2, 11), generator=gen)
    want, want_bytes = model(ids), model.weight_bytes()
    model.fuse_projections()
    assert torch.allclose(model(ids), want, rtol=0, atol=1e-10)
    assert model.weight_bytes() == want_bytes
    names = []
    model.replace_linears(lambda name, linear: names.append(name) or linear)
    assert names == [f"layers.{i}.{p}" for i in range(2) for p in
                     ("self_attn.o_proj", "self_attn.qkv_proj", "mlp.down_proj", "mlp.gate_up_proj")], names
