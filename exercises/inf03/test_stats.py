"""inf03 tests: percentiles against numpy's, on random latencies of odd counts."""
import numpy as np
import pytest
import torch

from lab.impl import Topic
from lab.testing import call_keeping_inputs, raises

impl = Topic("inf03")
# The oracle is numpy's percentile: your code may not simply call it, nor another library's (topic.toml).


@pytest.mark.parametrize("count", [1, 2, 7, 101, 1000])
def test_percentile_matches_numpy(rng, count):
    values = (torch.rand(count, generator=rng, dtype=torch.float64) ** 3 * 2).tolist()   # skewed, as latencies
    qs = [0, 50, 95, 99, 100] + (torch.rand(5, generator=rng, dtype=torch.float64) * 100).tolist()
    wants = [float(np.percentile(values, q)) for q in qs]
    for q, want in zip(qs, wants):
        got = call_keeping_inputs(impl.stats.percentile, values, q)           # sort a copy, not the caller's list
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), \
            f"{count} values, q={q:.3f}: numpy says {want!r}, you say {got!r} (linear interpolation between ranks)"


@pytest.mark.parametrize("bad", [([], 50), ([1.0, 2.0], 101), ([1.0], -1)], ids=["empty", "q>100", "q<0"])
def test_percentile_rejects_bad_input(bad):
    with raises(ValueError, because=f"percentile{bad}: no values, or q outside [0, 100]"):
        impl.stats.percentile(*bad)


def test_summarize_matches_numpy(rng):
    values = (torch.rand(53, generator=rng, dtype=torch.float64) * 0.3).tolist()
    want = dict(count=53, mean=np.mean(values), p50=np.percentile(values, 50), p95=np.percentile(values, 95),
                p99=np.percentile(values, 99), min=min(values), max=max(values))
    s = call_keeping_inputs(impl.stats.summarize, values)
    for key, value in want.items():
        assert getattr(s, key) == pytest.approx(value, rel=1e-12), (f"{key}: numpy says {value!r}, you say "
                                                                    f"{getattr(s, key)!r}")
    with raises(ValueError, because="summarize([]): no values to summarize"):
        impl.stats.summarize([])
