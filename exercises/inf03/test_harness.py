"""inf03 tests: the harness on a fake device whose clock is exact, with numpy's percentiles as the oracle."""
import json
import platform

import numpy as np
import pytest
import torch

from lab.fake_clock import FakeDevice
from lab.impl import Topic
from lab.streaming import greedy_stream
from lab.testing import raises, random_config, random_lab_model

impl = Topic("inf03")


class FakeEngine:
    """A streaming engine on a FakeDevice. Prefill queues base + per_token * prompt_len seconds of device
    work, each decode step decode_s; every token is yielded at once, before its work is done (as a GPU
    engine yields device tensors). The first `num_slow` calls are `slow_factor` times slower (compilation)."""

    def __init__(self, dev, base_s=0.003, per_token_s=0.0001, decode_s=0.002, num_slow=0, slow_factor=50.0):
        self.dev, self.base_s, self.per_token_s, self.decode_s = dev, base_s, per_token_s, decode_s
        self.num_slow, self.slow_factor, self.calls = num_slow, slow_factor, []

    def __call__(self, prompt_ids, max_new_tokens):
        self.calls.append((list(prompt_ids), max_new_tokens))
        factor = self.slow_factor if len(self.calls) <= self.num_slow else 1.0
        return self._tokens(len(prompt_ids), max_new_tokens, factor)

    def _tokens(self, prompt_len, max_new_tokens, factor):
        self.dev.launch(factor * (self.base_s + self.per_token_s * prompt_len))
        yield 11
        for i in range(max_new_tokens - 1):
            self.dev.launch(factor * self.decode_s)
            yield 12 + i

    def expected(self, request):
        """(ttft, [tbt, ...], e2e) of a request on a warm engine."""
        ttft = self.base_s + self.per_token_s * len(request.prompt_ids)
        return ttft, [self.decode_s] * (request.max_new_tokens - 1), ttft + self.decode_s * (request.max_new_tokens - 1)


def workload(seed, num_requests=17, prompt_lens=(3, 40), output_lens=(1, 60), vocab_size=500):
    """Requests drawn here (not with your make_workload, graded on its own): a harness test stands alone."""
    w, rng = impl.workload, np.random.default_rng(seed)
    requests = [w.Request(i, rng.integers(0, vocab_size, int(rng.integers(*prompt_lens, endpoint=True))).tolist(),
                          int(rng.integers(*output_lens, endpoint=True))) for i in range(num_requests)]
    d = w.LengthDistribution
    return w.Workload(seed, vocab_size, d.uniform(*prompt_lens), d.uniform(*output_lens), requests)


def key_paths(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix}
    return {prefix} | {p for k, v in tree.items() for p in key_paths(v, f"{prefix}/{k}")}


def test_time_request_waits_for_each_token(seed):
    dev = FakeDevice()
    engine = FakeEngine(dev)
    request = workload(seed).requests[0]
    got = impl.harness.time_request(engine, request, clock=dev.clock, synchronize=dev.synchronize)
    ttft, tbt, e2e = engine.expected(request)
    assert got.ttft_s == pytest.approx(ttft, rel=1e-9), (
        f"TTFT: the first token's work finishes {ttft * 1e3:.3f} ms after the start; you measured "
        f"{got.ttft_s * 1e3:.3f} ms. The engine yields before its work is done: synchronize() before every clock read")
    assert got.tbt_s == pytest.approx(tbt, rel=1e-9), (f"TBT: expected {len(tbt)} gaps of {engine.decode_s * 1e3} ms, "
                                                       f"got {got.tbt_s}")
    assert got.e2e_s == pytest.approx(e2e, rel=1e-9), f"E2E: expected {e2e * 1e3:.3f} ms, got {got.e2e_s * 1e3:.3f} ms"
    assert (got.request_id, got.prompt_len, got.num_output_tokens) == \
        (request.request_id, len(request.prompt_ids), request.max_new_tokens)


@pytest.mark.parametrize("case", ["no-tokens", "too-many-tokens"])
def test_time_request_rejects_a_misbehaving_engine(seed, case):
    request = workload(seed).requests[0]
    count = 0 if case == "no-tokens" else request.max_new_tokens + 1
    with raises(ValueError,
                because=f"the engine yields {count} tokens for a request of max_new_tokens={request.max_new_tokens} "
                        f"({case})"):
        impl.harness.time_request(lambda ids, n: iter(range(count)), request, clock=FakeDevice().clock,
                                  synchronize=lambda: None)


def test_run_benchmark_excludes_warmup(seed):
    dev, num_warmup = FakeDevice(), 3
    engine = FakeEngine(dev, num_slow=num_warmup)
    work = workload(seed)
    report = impl.harness.run_benchmark(engine, work, num_warmup=num_warmup, clock=dev.clock,
                                        synchronize=dev.synchronize, device="cpu")
    fed = [ids for ids, _ in engine.calls]
    want = [work.requests[i].prompt_ids for i in range(num_warmup)] + [r.prompt_ids for r in work.requests]
    assert fed == want, (f"expected {num_warmup} warm-up requests (the workload's first ones) then all "
                         f"{len(work.requests)} in order: {len(want)} calls; got {len(fed)}")
    e2e = [engine.expected(r)[2] for r in work.requests]
    assert report.results["e2e_s"]["max"] == pytest.approx(max(e2e), rel=1e-9), \
        "the slowest recorded request is a warm-up one: warm-up requests must not be recorded"
    assert report.results["duration_s"] == pytest.approx(sum(e2e), rel=1e-9), \
        (f"duration_s: the recorded requests take {sum(e2e):.4f} s on this clock, you report "
         f"{report.results['duration_s']:.4f} s")


def test_report_figures_match_numpy(seed):
    dev = FakeDevice()
    engine = FakeEngine(dev)
    work = workload(seed)
    results = impl.harness.run_benchmark(engine, work, num_warmup=1, clock=dev.clock, synchronize=dev.synchronize,
                                         device="cpu").results
    expected = [engine.expected(r) for r in work.requests]
    series = {"ttft_s": [e[0] for e in expected], "tbt_s": [g for e in expected for g in e[1]],
              "e2e_s": [e[2] for e in expected]}
    for name, values in series.items():
        for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            want = float(np.percentile(values, q))
            assert results[name][key] == pytest.approx(want, rel=1e-9), \
                (f"{name} {key}: numpy's percentile over {len(values)} values is {want:.6f}, you report "
                 f"{results[name][key]:.6f}")
        assert results[name]["count"] == len(values), (f"{name}: {len(values)} values expected (TBT gaps pooled over "
                                                       "requests)")
    output_tokens = sum(r.max_new_tokens for r in work.requests)
    assert results["output_tokens"] == output_tokens
    assert results["input_tokens"] == sum(len(r.prompt_ids) for r in work.requests)
    assert results["output_tokens_per_s"] == pytest.approx(output_tokens / sum(series["e2e_s"]), rel=1e-9), \
        "output_tokens_per_s: every output token over the recorded run's duration"


def test_same_seed_same_report(seed, tmp_path):
    """Two runs of the same seed on the fake device: same workload, same figures, same report keys."""
    reports = []
    for run in range(2):
        dev = FakeDevice(start_s=100.0 * run)           # a different clock origin must not matter
        reports.append(impl.harness.run_benchmark(FakeEngine(dev), workload(seed), num_warmup=2, clock=dev.clock,
                                                  synchronize=dev.synchronize, device="cpu"))
    first, second = (r.to_dict() for r in reports)
    assert key_paths(first) == key_paths(second), f"report keys differ: {sorted(key_paths(first) ^ key_paths(second))}"
    assert first["workload"] == second["workload"], "the same seed must give the same workload spec"
    for name in ("ttft_s", "tbt_s", "e2e_s"):
        for key, value in first["results"][name].items():
            assert second["results"][name][key] == pytest.approx(value, rel=1e-9), f"{name} {key} differs between runs"
    path = reports[0].write_json(tmp_path / "report.json")
    loaded = json.loads(path.read_text())
    assert key_paths(loaded) == key_paths(first), "the JSON file must hold the report's to_dict()"
    for section in ("workload", "settings", "results", "machine", "versions"):
        assert section in loaded, f"the report needs a '{section}' section"
    assert loaded["workload"]["seed"] == seed


def test_environment_names_the_machine_and_versions():
    env = impl.harness.environment("cpu")
    from lab.hardware import device_name
    assert env["versions"]["torch"] == torch.__version__ and env["versions"]["numpy"] == np.__version__
    assert env["versions"]["python"] == platform.python_version()
    assert "cuda" in env["versions"], "versions needs 'cuda' (torch.version.cuda, None on a CPU build)"
    assert env["machine"]["device"] == "cpu" and env["machine"]["device_name"] == device_name("cpu")
    assert env["machine"]["cpu_count"] >= 1 and "platform" in env["machine"] and "gpu_count" in env["machine"]
    json.dumps(env)                                     # must be JSON-serializable


def test_run_benchmark_drives_a_real_decoder(rng, seed):
    """The lab model through lab.streaming.greedy_stream (device tensors, real clock): sane figures."""
    config = random_config(rng, max_position_embeddings=128)
    model = random_lab_model(config, rng)
    work = workload(seed, 5, prompt_lens=(4, 12), output_lens=(2, 6), vocab_size=config.vocab_size)
    report = impl.harness.run_benchmark(greedy_stream(model), work, num_warmup=1, device="cpu")
    results = report.results
    assert results["output_tokens"] == sum(r.max_new_tokens for r in work.requests)
    assert results["output_tokens_per_s"] > 0 and results["ttft_s"]["p50"] > 0
    assert results["e2e_s"]["max"] >= results["ttft_s"]["max"], "a request ends after its first token"
    assert len(report.requests) == 5


@pytest.mark.gpu
def test_harness_waits_for_the_gpu(seed):
    """A stream that queues ~20 ms of GPU work per token and yields a device tensor at once."""

    def stream(prompt_ids, max_new_tokens):
        for i in range(max_new_tokens):
            torch.cuda._sleep(int(4e7))
            yield torch.tensor(i, device="cuda")

    work = workload(seed, 3, prompt_lens=(5, 5), output_lens=(3, 3))
    results = impl.harness.run_benchmark(stream, work, num_warmup=1, device="cuda").results
    assert results["ttft_s"]["min"] > 0.010 and results["tbt_s"]["min"] > 0.010, \
        (f"TTFT {results['ttft_s']['min'] * 1e3:.2f} ms, TBT {results['tbt_s']['min'] * 1e3:.2f} ms for ~20 ms of GPU "
         "work each")
