"""inf03 · A seeded workload: requests whose prompt and output lengths are drawn from distributions.

A benchmark is only as good as its workload. Real chat traffic has short and long prompts and a heavy
tail of long answers (ShareGPT-style), and the numbers an engine reports depend on that mix: a batch of
identical requests hides every scheduling problem. The same seed must give the same requests on any
machine and in any process, so draw everything from one `numpy.random.Generator` seeded here, never from
a global random state that other code also moves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

KINDS = ("fixed", "uniform", "lognormal")


@dataclass(frozen=True)
class LengthDistribution:
    """Integer lengths in [low, high].

    kind "fixed":     always `low` (low == high).
    kind "uniform":   every integer in [low, high] (both ends included) equally likely.
    kind "lognormal": round(exp(normal(log(median), sigma))), clipped to [low, high]: mostly near the
                      median, with a heavy tail of long ones (as chat outputs).
    Build them with `fixed(n)`, `uniform(low, high)`, `lognormal(median, sigma, low, high)`.
    """

    kind: str
    low: int
    high: int
    median: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not 1 <= self.low <= self.high:
            raise ValueError(f"need 1 <= low <= high, got low={self.low}, high={self.high}")
        if self.kind == "fixed" and self.low != self.high:
            raise ValueError(f"a fixed length needs low == high, got {self.low} and {self.high}")
        if self.kind == "lognormal" and not (self.median and self.low <= self.median <= self.high
                                             and self.sigma and self.sigma > 0):
            raise ValueError(f"lognormal needs low <= median <= high and sigma > 0, got median={self.median}, "
                             f"sigma={self.sigma}")

    @classmethod
    def fixed(cls, n: int) -> "LengthDistribution":
        return cls("fixed", n, n)

    @classmethod
    def uniform(cls, low: int, high: int) -> "LengthDistribution":
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float, low: int, high: int) -> "LengthDistribution":
        return cls("lognormal", low, high, median=median, sigma=sigma)

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """`n` lengths drawn with `rng` (and no other random source), as a list of Python ints in [low, high],
        distributed as the class docstring says for this kind. Hints: README.md, "Hints"."""
        # BEGIN SOLUTION
        if self.kind == "fixed":
            return [self.low] * n
        if self.kind == "uniform":
            return rng.integers(self.low, self.high, size=n, endpoint=True).tolist()
        draws = rng.lognormal(np.log(self.median), self.sigma, size=n)
        return np.clip(np.rint(draws), self.low, self.high).astype(int).tolist()
        # END SOLUTION

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """One request: its prompt's token ids and how many tokens to generate."""

    request_id: int
    prompt_ids: list[int]
    max_new_tokens: int


@dataclass(frozen=True)
class Workload:
    """The requests and everything needed to draw them again."""

    seed: int
    vocab_size: int
    prompt_len: LengthDistribution
    output_len: LengthDistribution
    requests: list[Request] = field(default_factory=list)

    def spec(self) -> dict:
        """What a report records: how the workload was drawn (the ids themselves follow from it)."""
        return {"seed": self.seed, "num_requests": len(self.requests), "vocab_size": self.vocab_size,
                "prompt_len": self.prompt_len.to_dict(), "output_len": self.output_len.to_dict()}


def make_workload(num_requests: int, prompt_len: LengthDistribution, output_len: LengthDistribution,
                  vocab_size: int, seed: int) -> Workload:
    """`num_requests` requests with ids 0, 1, 2, ...: prompt lengths from `prompt_len`, output lengths
    (`max_new_tokens`) from `output_len`, prompt tokens uniform in [0, vocab_size).

    Everything comes from one `np.random.default_rng(seed)`, drawn in this order: all prompt lengths,
    then all output lengths, then each request's prompt ids. The same seed gives the same workload in
    any process whatever else used numpy's, torch's or Python's global random state.
    Raises ValueError if num_requests < 1 or vocab_size < 1.
    """
    # BEGIN SOLUTION
    if num_requests < 1 or vocab_size < 1:
        raise ValueError(f"need num_requests >= 1 and vocab_size >= 1, got {num_requests}, {vocab_size}")
    rng = np.random.default_rng(seed)
    prompt_lens = prompt_len.sample(rng, num_requests)
    output_lens = output_len.sample(rng, num_requests)
    requests = [Request(i, rng.integers(0, vocab_size, size=p).tolist(), o)
                for i, (p, o) in enumerate(zip(prompt_lens, output_lens))]
    return Workload(seed, vocab_size, prompt_len, output_len, requests)
    # END SOLUTION
