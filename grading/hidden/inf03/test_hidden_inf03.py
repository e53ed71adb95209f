"""inf03 hidden tests: percentiles on ties and tiny counts, workloads of other sizes, the harness on other engines."""
import random

import numpy as np
import pytest
import torch

from lab.fake_clock import FakeDevice
from lab.impl import Topic

impl = Topic("inf03")


@pytest.mark.parametrize("count", [3, 4, 64])
def test_hidden_percentile_with_ties_and_unsorted_input(rng, count):
    """Integer-valued, unsorted latencies full of ties (and negative offsets), at many fractional q."""
    values = (torch.randint(-3, 6, (count,), generator=rng).double() * 0.25).tolist()
    qs = [0, 1, 25, 33.3, 50, 66.6, 75, 90, 100] + (torch.rand(7, generator=rng, dtype=torch.float64) * 100).tolist()
    original = list(values)
    for q in qs:
        want = float(np.percentile(values, q))
        got = impl.stats.percentile(values, q)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), \
            f"{count} values {sorted(values)[:8]}..., q={q:.3f}: numpy says {want!r}, you say {got!r}"
    assert values == original, "percentile must not reorder the caller's list"
    s = impl.stats.summarize(values)
    for key, want in dict(count=count, mean=np.mean(values), p50=np.percentile(values, 50),
                          p95=np.percentile(values, 95), p99=np.percentile(values, 99), min=min(values),
                          max=max(values)).items():
        assert getattr(s, key) == pytest.approx(want, rel=1e-12, abs=1e-15), (f"{key}: numpy says {want!r}, you say "
                                                                              f"{getattr(s, key)!r}")


def test_hidden_workload_narrow_uniforms_and_reseeding(rng):
    """uniform(1, 2) hits both ends about equally; uniform(k, k) is always k; the seed alone fixes the workload."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
    d = impl.workload.LengthDistribution
    draws = d.uniform(1, 2).sample(np.random.default_rng(seed), 3000)
    assert set(draws) == {1, 2} and 1300 < draws.count(2) < 1700, \
        f"uniform(1, 2): 3000 draws gave {draws.count(1)} ones and {draws.count(2)} twos (is `high` included?)"
    k = int(torch.randint(2, 30, (1,), generator=rng))
    assert d.uniform(k, k).sample(np.random.default_rng(seed), 9) == [k] * 9
    num = int(torch.randint(1, 8, (1,), generator=rng))
    first = impl.workload.make_workload(num, d.uniform(k, k), d.uniform(1, 2), vocab_size=3, seed=seed)
    random.seed(seed ^ 5), np.random.seed((seed + 7) % 2**32), torch.manual_seed(seed + 9)
    np.random.random(3), torch.rand(2), random.random()
    again = impl.workload.make_workload(num, d.uniform(k, k), d.uniform(1, 2), vocab_size=3, seed=seed)
    assert again.requests == first.requests, ("the same seed must give the same requests whatever the global random "
                                              "state")
    assert [r.request_id for r in first.requests] == list(range(num))
    for r in first.requests:
        assert len(r.prompt_ids) == k and r.max_new_tokens in (1, 2) and all(0 <= t < 3 for t in r.prompt_ids)


class VaryingEngine:
    """A streaming engine on a FakeDevice whose decode step takes a different time for every request;
    the first `num_slow` calls are 40x slower (warm-up)."""

    def __init__(self, dev, decode_s: dict, base_s=0.002, per_token_s=0.0003, num_slow=0):
        self.dev, self.decode_s, self.base_s = dev, decode_s, base_s
        self.per_token_s, self.num_slow = per_token_s, num_slow
        self.calls = []

    def __call__(self, prompt_ids, max_new_tokens):
        self.calls.append(list(prompt_ids))
        factor = 40.0 if len(self.calls) <= self.num_slow else 1.0
        decode_s = self.decode_s[len(prompt_ids), max_new_tokens]
        return self._tokens(len(prompt_ids), max_new_tokens, decode_s, factor)

    def _tokens(self, prompt_len, max_new_tokens, decode_s, factor):
        self.dev.launch(factor * (self.base_s + self.per_token_s * prompt_len))
        yield 5
        for i in range(max_new_tokens - 1):
            self.dev.launch(factor * decode_s)
            yield 6 + i


def test_hidden_run_benchmark_pools_uneven_gaps(rng):
    """Requests of different output lengths (some of one token), each with its own decode speed: TBT
    percentiles over every gap pooled, TTFT and E2E per request, warm-up excluded."""
    w = impl.workload
    num, num_warmup = int(torch.randint(9, 20, (1,), generator=rng)), 2
    requests, decode_s = [], {}
    for i in range(num):
        prompt_len = 3 * i + int(torch.randint(1, 3, (1,), generator=rng))       # distinct prompt lengths
        out_len = 1 if i % 4 == 1 else int(torch.randint(2, 30, (1,), generator=rng))
        requests.append(w.Request(i, torch.randint(0, 100, (prompt_len,), generator=rng).tolist(), out_len))
        decode_s[prompt_len, out_len] = 0.001 * (1 + 9 * float(torch.rand((), generator=rng)))
    d = w.LengthDistribution
    work = w.Workload(7, 100, d.uniform(1, 60), d.uniform(1, 30), requests)
    dev = FakeDevice(start_s=12.5)
    engine = VaryingEngine(dev, decode_s, num_slow=num_warmup)
    results = impl.harness.run_benchmark(engine, work, num_warmup=num_warmup, clock=dev.clock,
                                         synchronize=dev.synchronize, device="cpu").results
    assert len(engine.calls) == num_warmup + num, (f"expected {num_warmup} warm-up + {num} requests, saw "
                                                   f"{len(engine.calls)}")
    ttft = [engine.base_s + engine.per_token_s * len(r.prompt_ids) for r in requests]
    gaps = [[decode_s[len(r.prompt_ids), r.max_new_tokens]] * (r.max_new_tokens - 1) for r in requests]
    series = {"ttft_s": ttft, "tbt_s": [g for gs in gaps for g in gs],
              "e2e_s": [t + sum(gs) for t, gs in zip(ttft, gaps)]}
    for name, values in series.items():
        assert results[name]["count"] == len(values), (f"{name}: {len(values)} values expected, got "
                                                       f"{results[name]['count']}")
        for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            want = float(np.percentile(values, q))
            assert results[name][key] == pytest.approx(want, rel=1e-9), \
                (f"{name} {key}: numpy's percentile over {len(values)} values is {want:.6f}, you report "
                 f"{results[name][key]:.6f}")
    assert results["duration_s"] == pytest.approx(sum(series["e2e_s"]), rel=1e-9)
    assert results["output_tokens"] == sum(r.max_new_tokens for r in requests)
