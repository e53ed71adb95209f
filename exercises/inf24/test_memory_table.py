"""inf24 tests: converting a model to each storage format, and the memory-quality table on the real model.

Oracles: the bytes of the converted model's own tensors (`LlamaModel.weight_bytes`) and the per-tensor
count of test_formats; a bf16 model rebuilt from the decoded stored weights (same logits); lab.eval's
perplexity; the quality ordering fp32 <= fp16 ~ bf16 ~ int8 << int4 that rounding error implies.
"""
import copy

import pytest
import torch

from lab.config import SHAPES
from lab.figures import one_cpu_thread
from lab.impl import Topic
from lab.testing import random_lab_model

from .test_formats import FORMATS, grouped_config, oracle_model_bytes
from .test_quantized_linear import decode

impl = Topic("inf24")
# The real-model table runs on a short slice of the lab's evaluation text, to stay under a minute on a
# CPU: one window of 256 tokens. docs/memory-quality.md has the table on 2,048 tokens.
TABLE_TOKENS, TABLE_WINDOW, GROUP_SIZE = 256, 256, 32
_tables: dict = {}


def real_table(real_model, tokenizer):
    """The student's table on the real model, computed once per session and shared by the tests below."""
    if "rows" not in _tables:
        from lab.data import eval_token_ids
        ids = eval_token_ids(tokenizer, max_tokens=TABLE_TOKENS)
        _tables["ids"] = ids
        with one_cpu_thread():      # ~5x faster than two threads on a busy 2-core machine (measured)
            _tables["rows"] = impl.memory_table.memory_quality_table(real_model, ids, FORMATS, GROUP_SIZE,
                                                                     TABLE_WINDOW)
    return _tables["rows"], _tables["ids"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_model_stores_each_format(rng, fmt):
    config = grouped_config(rng, 32)
    model = random_lab_model(config, rng)
    before = copy.deepcopy(model.state_dict())
    converted = impl.memory_table.convert_model(model, fmt, 32)
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items()), \
        "convert_model changed the model it was given: convert a copy"
    want = oracle_model_bytes(config, fmt, 32)
    assert converted.weight_bytes() == want, \
        f"{fmt}: the converted model stores {converted.weight_bytes():,} bytes, expected {want:,}"
    ids = torch.randint(config.vocab_size, (2, 9), generator=rng)
    with torch.no_grad():
        got = converted(ids).float()
        if fmt in ("fp32", "fp16", "bf16"):
            want_logits = copy.deepcopy(model).to({"fp32": torch.float32, "fp16": torch.float16,
                                                   "bf16": torch.bfloat16}[fmt])(ids).float()
        else:      # the same model in bf16 with each projection's weight decoded from what was stored
            rebuilt = copy.deepcopy(model).to(torch.bfloat16)
            stored_modules = dict(converted.layers.named_modules())
            for name, module in rebuilt.layers.named_modules():
                if isinstance(module, torch.nn.Linear):
                    w_deq, step = decode(stored_modules[name], fmt, 32)
                    original = dict(model.layers.named_modules())[name].weight.double()
                    assert ((w_deq - original).abs() <= step / 2 + 1e-9).all(), \
                        f"{fmt} layers.{name}: the stored codes do not round the float32 weight to the nearest step"
                    module.weight.data = w_deq.to(torch.bfloat16)
            want_logits = rebuilt(ids).float()
    torch.testing.assert_close(got, want_logits, rtol=1e-2, atol=1e-2,
                               msg=lambda m: f"{fmt}: the converted model's logits differ from the oracle's: {m}")


def test_window_logits_score_what_lab_perplexity_scores(rng):
    from lab.eval import perplexity
    config = grouped_config(rng, 32)
    model = random_lab_model(config, rng)
    num_ids = int(torch.randint(60, 120, (1,), generator=rng)) | 1
    ids = torch.randint(config.vocab_size, (num_ids,), generator=rng).tolist()
    window = 32
    logits = impl.memory_table.window_logits(model, ids, window)
    targets = impl.memory_table.targets_of(ids, window)
    assert logits.shape == (targets.numel(), config.vocab_size) and logits.dtype == torch.float32, \
        f"expected float32 [{targets.numel()}, {config.vocab_size}] (each window minus its last position), " \
        f"got {logits.dtype} {list(logits.shape)}"
    got = impl.memory_table.perplexity_of(logits, targets)
    want = perplexity(model, ids, window=window, stride=window)
    assert abs(got / want - 1) < 1e-6, f"perplexity from your window logits {got:.6f}, lab.eval.perplexity {want:.6f}"


def test_memory_table_bytes_are_exact_on_the_real_model(real_model, tokenizer):
    rows, _ = real_table(real_model, tokenizer)
    assert [r.format for r in rows] == list(FORMATS), (f"one row per format, in order {FORMATS}: got "
                                                       f"{[r.format for r in rows]}")
    for row in rows:
        want = oracle_model_bytes(SHAPES["smollm2-135m"], row.format, GROUP_SIZE)
        assert row.bytes == want, f"{row.format}: the table says {row.bytes:,} bytes, the stored tensors take {want:,}"


def test_memory_table_fp32_row_is_the_reference(real_model, tokenizer):
    from lab.eval import perplexity
    rows, ids = real_table(real_model, tokenizer)
    fp32 = rows[0]
    with one_cpu_thread():
        want = perplexity(real_model, ids, window=TABLE_WINDOW, stride=TABLE_WINDOW)
    # 1e-4: lab.eval takes the log-softmax in float32, perplexity_of in float64 (they differ by ~1e-5).
    assert abs(fp32.perplexity / want - 1) < 1e-4, f"fp32 perplexity {fp32.perplexity:.4f}, lab.eval says {want:.4f}"
    assert abs(fp32.kl) < 1e-9 and fp32.top1 == 1.0, \
        f"fp32 against itself must give KL 0 and top-1 agreement 1, got {fp32.kl:.2e} and {fp32.top1:.4f}"


def test_memory_table_orders_quality_by_rounding_error(real_model, tokenizer):
    """Measured on this slice: KL fp16 2e-5, bf16 1.2e-3, int8 4.3e-3, int4 0.38; top-1 1.0, 0.98, 0.96, 0.70."""
    rows, _ = real_table(real_model, tokenizer)
    by = {r.format: r for r in rows}
    small = max(by[f].kl for f in ("fp16", "bf16", "int8"))
    assert 0 < by["fp16"].kl < 1e-3 and small < 0.02, \
        f"16-bit floats and int8 weights should cost little: KL fp16 {by['fp16'].kl:.2e}, bf16 {by['bf16'].kl:.2e}, " \
        f"int8 {by['int8'].kl:.2e} (expected < 0.02)"
    assert by["int4"].kl > 5 * small, \
        f"int4 (16 levels) should cost far more than int8 (255): KL {by['int4'].kl:.3f} vs at most {small:.4f}"
    assert by["int4"].top1 < by["int8"].top1 <= 1 and by["int4"].perplexity > 1.05 * by["int8"].perplexity, \
        f"int4 should agree less and predict worse than int8: top-1 {by['int4'].top1:.3f} vs {by['int8'].top1:.3f}, " \
        f"perplexity {by['int4'].perplexity:.2f} vs {by['int8'].perplexity:.2f}"
    assert [r.bytes for r in rows] == sorted((r.bytes for r in rows), reverse=True), \
        "bytes must not grow from fp32 to int4"
