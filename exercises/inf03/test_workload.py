"""inf03 tests: the seeded workload, drawn again from its seed and checked against its distributions."""
import random

import numpy as np
import pytest
import torch

from lab.impl import Topic
from lab.testing import raises

impl = Topic("inf03")


def dists():
    d = impl.workload.LengthDistribution
    return d.uniform(5, 11), d.lognormal(median=40, sigma=0.8, low=4, high=400)


def test_same_seed_same_workload(seed):
    prompt_len, output_len = dists()
    first = impl.workload.make_workload(23, prompt_len, output_len, vocab_size=1001, seed=seed)
    random.seed(seed + 1), np.random.seed(seed % 2**32), torch.manual_seed(seed + 2)     # move global RNGs
    np.random.random(17), torch.rand(5), random.random()
    again = impl.workload.make_workload(23, prompt_len, output_len, vocab_size=1001, seed=seed)
    assert again.requests == first.requests, \
        "the same seed must give the same requests whatever the global random state (use np.random.default_rng(seed))"
    other = impl.workload.make_workload(23, prompt_len, output_len, vocab_size=1001, seed=seed + 1)
    assert other.requests != first.requests, "a different seed must give a different workload"
    assert first.spec() == again.spec() and first.spec()["seed"] == seed


def test_workload_requests_are_well_formed(seed):
    prompt_len, output_len = dists()
    workload = impl.workload.make_workload(31, prompt_len, output_len, vocab_size=97, seed=seed)
    assert [r.request_id for r in workload.requests] == list(range(31)), "request ids must be 0, 1, 2, ..."
    for r in workload.requests:
        assert 5 <= len(r.prompt_ids) <= 11, f"request {r.request_id}: prompt length {len(r.prompt_ids)} not in [5, 11]"
        assert 4 <= r.max_new_tokens <= 400, f"request {r.request_id}: output length {r.max_new_tokens} not in [4, 400]"
        assert all(type(t) is int and 0 <= t < 97 for t in r.prompt_ids), "prompt ids must be Python ints in [0, vocab)"
        assert type(r.max_new_tokens) is int, "max_new_tokens must be a Python int (JSON, range())"


def test_uniform_lengths_cover_both_ends(seed):
    """4,000 draws of uniform(3, 9): each of the 7 values about 1/7 of the time, 9 included."""
    rng = np.random.default_rng(seed)
    draws = impl.workload.LengthDistribution.uniform(3, 9).sample(rng, 4000)
    counts = {v: draws.count(v) for v in range(3, 10)}
    assert len(draws) == 4000 and set(draws) <= set(counts), ("values outside [3, 9]: "
                                                              f"{sorted(set(draws) - set(counts))}")
    for value, count in counts.items():            # 4000/7 = 571, sd ~22: 5 sd either side
        assert 460 < count < 685, (f"uniform(3, 9): {value} drawn {count} times in 4000, expected ~571 (is `high` "
                                   "included?)")


def test_lognormal_lengths_have_the_median_and_a_tail(seed):
    rng = np.random.default_rng(seed)
    dist = impl.workload.LengthDistribution.lognormal(median=50, sigma=1.0, low=2, high=2000)
    draws = np.array(dist.sample(rng, 4000))
    assert draws.min() >= 2 and draws.max() <= 2000, "lognormal draws must be clipped to [low, high]"
    assert 45 <= np.median(draws) <= 55, f"median {np.median(draws)}, expected ~50 (pass log(median) as the log-mean)"
    assert 120 <= np.percentile(draws, 90) <= 230, \
        f"P90 {np.percentile(draws, 90):.0f}, expected ~180 (= 50 * e^(1.28 sigma)): is sigma the log-space sd?"
    assert impl.workload.LengthDistribution.fixed(7).sample(rng, 5) == [7] * 5


@pytest.mark.parametrize("bad", [dict(num_requests=0), dict(vocab_size=0)], ids=["no-requests", "no-vocab"])
def test_make_workload_rejects_bad_input(bad):
    prompt_len, output_len = dists()
    args = {"num_requests": 3, "vocab_size": 50, **bad}
    with raises(ValueError, because=f"make_workload({bad}): at least one request and one token in the vocabulary"):
        impl.workload.make_workload(args["num_requests"], prompt_len, output_len, args["vocab_size"], seed=1)
