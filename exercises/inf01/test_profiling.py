"""inf01 tests: the profiler's operator table, checked on workloads whose calls and FLOPs are known exactly."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lab.cache import DynamicCache
from lab.impl import Topic
from lab.testing import naive_attention, pick, raises, random_config, random_lab_model

impl = Topic("inf01")
MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def trace_events(path) -> list[dict]:
    with open(path) as f:
        trace = json.load(f)
    assert isinstance(trace, dict) and "traceEvents" in trace, \
        f"{path} is not a Chrome trace (a JSON object with 'traceEvents'): use prof.export_chrome_trace(path)"
    return trace["traceEvents"]


class KnownWorkload:
    """r_mm matmuls [m, k] @ [k, n], r_bmm batched matmuls, r_add small additions: calls and FLOPs known."""

    def __init__(self, rng):
        self.m, self.k, self.n = (pick(rng, 300, 400) | 1 for _ in range(3))
        self.r_mm, self.r_bmm, self.r_add = pick(rng, 2, 5), pick(rng, 1, 4), pick(rng, 3, 9)
        self.a, self.b = torch.randn(self.m, self.k), torch.randn(self.k, self.n)
        self.x, self.y = torch.randn(3, 5, 7), torch.randn(3, 7, 9)
        self.c, self.d = torch.randn(101), torch.randn(101)
        self.num_calls = 0

    def __call__(self) -> None:
        self.num_calls += 1
        for _ in range(self.r_mm):
            torch.mm(self.a, self.b)
        for _ in range(self.r_bmm):
            torch.bmm(self.x, self.y)
        for _ in range(self.r_add):
            torch.add(self.c, self.d)


def test_profile_ops_counts_a_known_workload(rng, tmp_path):
    work = KnownWorkload(rng)
    result = impl.profiling.profile_ops(work, device_type="cpu", top_k=None, trace_path=tmp_path / "t.json",
                                        warmup=2)
    assert work.num_calls == 3, f"warmup=2 then one profiled run: fn should run 3 times, ran {work.num_calls}"
    names = [op.name for op in result.ops]
    for name, calls, flops in [("aten::mm", work.r_mm, work.r_mm * 2 * work.m * work.k * work.n),
                               ("aten::bmm", work.r_bmm, work.r_bmm * 2 * 3 * 5 * 7 * 9),
                               ("aten::add", work.r_add, None)]:
        op = result.op(name)
        assert op is not None, f"{name} ran in the profiled region but is missing from ops ({names[:8]}...)"
        assert op.calls == calls, f"{name}: the profiled run called it {calls} times, you report {op.calls}"
        if flops is not None:
            assert op.flops == flops, (f"{name}: {flops:,} FLOPs (2*m*k*n per matmul) expected, got {op.flops:,}; "
                                       "did you ask the profiler to count FLOPs (with_flops=True)?")
    assert all("prefill" != n and "decode" != n for n in names), "record_function labels are not operators"
    times = [op.time_s for op in result.ops]
    assert times == sorted(times, reverse=True), f"ops must be sorted by time_s, largest first: {times[:6]}"
    assert names[0] == "aten::mm", (f"the {work.m}x{work.k}x{work.n} matmuls dominate this run; your top op is "
                                    f"{names[0]}")
    mm_events = [e for e in trace_events(tmp_path / "t.json") if e.get("name") == "aten::mm"]
    assert len(mm_events) == work.r_mm, f"the trace holds {len(mm_events)} aten::mm events, expected {work.r_mm}"


def test_profile_ops_ranks_by_self_time(rng, tmp_path):
    """F.linear runs aten::linear -> aten::matmul -> aten::mm: only aten::mm does the work."""
    m, k, n = (pick(rng, 400, 500) | 1 for _ in range(3))
    x, w = torch.randn(m, k), torch.randn(n, k)
    result = impl.profiling.profile_ops(lambda: F.linear(x, w), device_type="cpu", top_k=None,
                                        trace_path=tmp_path / "t.json")
    mm, linear = result.op("aten::mm"), result.op("aten::linear")
    assert mm is not None and linear is not None, ("expected aten::linear and aten::mm, got "
                                                   f"{[o.name for o in result.ops]}")
    assert linear.time_s < 0.5 * mm.time_s, (
        f"aten::linear {linear.time_s * 1e3:.3f} ms vs aten::mm {mm.time_s * 1e3:.3f} ms: report each op's *self* "
        "time (self_cpu_time_total), not its total, which counts the matmul again in every caller")
    traced = sum(e["dur"] for e in trace_events(tmp_path / "t.json") if e.get("name") == "aten::mm") / 1e6
    assert mm.time_s == pytest.approx(traced, rel=0.02, abs=2e-5), \
        f"aten::mm: the trace says {traced * 1e3:.3f} ms, you report {mm.time_s * 1e3:.3f} ms (seconds, not µs?)"


def test_profile_ops_keeps_the_top_k(rng):
    work = KnownWorkload(rng)
    top_k = pick(rng, 1, 3)
    result = impl.profiling.profile_ops(work, device_type="cpu", top_k=top_k)
    assert len(result.ops) == top_k, f"top_k={top_k}: expected {top_k} ops, got {len(result.ops)}"
    assert result.ops[0].name == "aten::mm", f"expected aten::mm on top, got {result.ops[0].name}"
    assert result.trace_path is None, "no trace_path given: no trace should be written"
    with raises(ValueError, because="profile_ops(top_k=0) asks for no operator at all (top_k must be >= 1 or None)"):
        impl.profiling.profile_ops(work, device_type="cpu", top_k=0)


def test_profile_prefill_decode_counts_the_model_flops(rng, tmp_path):
    """The profiler's matmul FLOPs over a prefill and a decode step equal torch's FlopCounterMode's."""
    config = random_config(rng)
    model = random_lab_model(config, rng)
    model.attention = naive_attention            # plain matmuls, which the profiler counts
    prompt = torch.randint(config.vocab_size, (pick(rng, 5, 30) | 1,), generator=rng).tolist()
    result = impl.profiling.profile_prefill_decode(model, prompt, top_k=None, trace_path=tmp_path / "t.json")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        cache = DynamicCache(config, 1, len(prompt) + 1)
        first = model(torch.tensor([prompt]), cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)
        model(first, cache=cache, last_only=True)
    got = sum(op.flops for op in result.ops if op.name in MATMUL_OPS)
    assert got == counter.get_total_flops(), (
        f"prefill of {len(prompt)} tokens + 1 decode step: FlopCounterMode counts {counter.get_total_flops():,} "
        f"matmul FLOPs, your profile's matmul ops {got:,} (one prefill and one decode step, last_only=True?)")
    assert set(result.phase_s) == {"prefill", "decode"}, ("phase_s keys: expected prefill and decode, got "
                                                          f"{set(result.phase_s)}")
    labels = {e["name"]: e["dur"] / 1e6 for e in trace_events(tmp_path / "t.json") if e.get("cat") == "user_annotation"}
    for phase in ("prefill", "decode"):
        assert phase in labels, f"the trace has no '{phase}' region: wrap it in torch.profiler.record_function"
        assert result.phase_s[phase] == pytest.approx(labels[phase], rel=0.02, abs=2e-5), \
            f"{phase}: the trace says {labels[phase] * 1e3:.2f} ms, phase_s says {result.phase_s[phase] * 1e3:.2f} ms"


@pytest.mark.gpu
def test_profile_ops_ranks_by_device_time_on_gpu():
    """Big matmuls: little host time, much device time. Tiny adds: the reverse. Rank by device time."""
    from lab.hardware import peaks
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    c = torch.randn(7, device="cuda")

    def work():
        for _ in range(4):
            a @ a
        for _ in range(400):
            c.add_(1.0)

    result = impl.profiling.profile_ops(work, device_type="cuda", top_k=None)
    assert result.ops[0].name == "aten::mm", \
        f"ranked by device time the matmuls come first; your top ops are {[o.name for o in result.ops[:3]]}"
    expected = 4 * 2 * 8192**3 / peaks("cuda").matmul_flops_per_s
    assert 0.5 * expected < result.ops[0].time_s < 2.0 * expected, \
        (f"aten::mm: ~{expected * 1e3:.1f} ms of device time expected at this GPU's peak, got "
         f"{result.ops[0].time_s * 1e3:.2f} ms")
    add = result.op("aten::add_")
    assert add is not None and add.time_s < result.ops[0].time_s, "aten::add_ should rank below aten::mm on device time"
