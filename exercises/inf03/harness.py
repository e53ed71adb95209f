"""inf03 · The benchmark harness: a workload through any engine, timed fairly, reported reproducibly.

The engine is a token stream (`lab.streaming`): `stream(prompt_ids, max_new_tokens)` yields each new
token as soon as the engine has it, so the harness sees the first token (TTFT), the gaps between tokens
(TBT) and the last one (end-to-end latency). Rules a fair benchmark keeps:
- warm-up requests first, not recorded (allocation, kernel selection, compilation happen once);
- the device synchronized before every clock read (a GPU engine yields tensors whose work is queued);
- one clock, injected, so tests can drive it and every figure is reproducible on a fake device;
- the report says how the workload was drawn, on which machine and with which versions.
Later topics and the capstone report their numbers with this harness.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lab.hardware import device as default_device, device_name, synchronize as device_synchronize
from lab.streaming import TokenStream
from lab.errors import NotStarted

from .stats import summarize
from .workload import Request, Workload

REPORT_VERSION = 1


@dataclass
class RequestTiming:
    """One request's latencies, in seconds.

    ttft_s: from just before the request starts to its first token; tbt_s: the gap before each later
    token (num_output_tokens - 1 entries); e2e_s: from the start to its last token.
    """

    request_id: int
    prompt_len: int
    num_output_tokens: int
    ttft_s: float
    tbt_s: list[float] = field(default_factory=list)
    e2e_s: float = 0.0


@dataclass
class BenchmarkReport:
    """A benchmark run: what ran (`workload`, `settings`), what it measured (`results`, `requests`), and
    where (`environment`: {"machine": ..., "versions": ...}). `to_dict()` is the JSON document."""

    workload: dict
    settings: dict
    results: dict
    environment: dict
    requests: list[RequestTiming] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"report_version": REPORT_VERSION, "workload": self.workload, "settings": self.settings,
                "results": self.results, **self.environment}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def time_request(stream: TokenStream, request: Request, *, clock: Callable[[], float] = time.perf_counter,
                 synchronize: Callable[[], None] = device_synchronize) -> RequestTiming:
    """Run one request through `stream` and time its tokens.

    Read the clock once before starting the stream, and once as each token arrives; call synchronize()
    right before *every* clock read (a token may be a device tensor whose work is still queued).
    The stream is called once, as `stream(request.prompt_ids, request.max_new_tokens)`. Returns the
    request's RequestTiming (prompt_len = len(prompt_ids), num_output_tokens = tokens yielded).
    Raises ValueError, naming the request, if the stream yields no token or more than
    request.max_new_tokens. Hints: README.md, "Hints".
    """
    raise NotStarted("inf03: implement time_request")


def summarize_requests(timings: list[RequestTiming], duration_s: float) -> dict:
    """The `results` section of a report, from the recorded requests and the wall time they took.

    Keys: num_requests, input_tokens, output_tokens (sums), duration_s, requests_per_s,
    output_tokens_per_s (both over duration_s), and ttft_s, tbt_s, e2e_s: `summarize(...).to_dict()` of
    every request's TTFT, of every gap between tokens pooled over all requests, and of every request's
    end-to-end latency. tbt_s is None when no request produced a second token.
    Raises ValueError on no timings or duration_s <= 0.
    """
    raise NotStarted("inf03: implement summarize_requests")


def environment(device: torch.device | str) -> dict:
    """{"machine": {...}, "versions": {...}} for the report.

    machine:  device ("cpu" / "cuda"), device_name (`lab.hardware.device_name`), platform
              (`platform.platform()`), cpu_count (`os.cpu_count()`), gpu_count (torch.cuda.device_count()).
    versions: python (`platform.python_version()`), torch, numpy, cuda (`torch.version.cuda`, None on a
              CPU build).
    """
    raise NotStarted("inf03: implement environment")


def run_benchmark(stream: TokenStream, workload: Workload, *, num_warmup: int = 2, name: str = "engine",
                  clock: Callable[[], float] = time.perf_counter, synchronize: Callable[[], None] | None = None,
                  device: torch.device | str | None = None) -> BenchmarkReport:
    """Benchmark `stream` on `workload`, one request at a time, in order.

    First `num_warmup` warm-up requests, not recorded: workload.requests[i % num_requests] for i in
    range(num_warmup). Then every request, timed with `time_request`. duration_s runs from a clock read
    before the first recorded request to one after the last (device synchronized before each).
    device:      where the engine runs (default lab.hardware.device()); synchronize defaults to
                 `lab.hardware.synchronize(device)`.
    Returns a BenchmarkReport with workload=workload.spec(), settings={"name": name, "num_warmup": ...},
    results=summarize_requests(...), environment=environment(device), requests=the timings.
    Raises ValueError if num_warmup < 0.
    """
    raise NotStarted("inf03: implement run_benchmark")
