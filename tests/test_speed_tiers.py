"""Speed feedback and tiers: what `lab.timing.compare` records, the tiers of lab/thresholds.py, the cards'
reference figures in lab/profiles/, pytest's "speed" section and pytest-benchmark's label. Every timing
here runs on a fake clock (lab/fake_clock.py), so the figures are exact on any machine."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

import lab.timing as timing
from lab import thresholds
from lab.fake_clock import FakeDevice
from lab.paths import REPO_ROOT

KEY = "inf12::test_batch_of_16_has_6x_the_throughput"
CARD = "NVIDIA Fake 80GB"


@pytest.mark.parametrize("ratio, threshold, reference, expected", [
    (1.9, 2.0, 10.0, "below threshold"),
    (math.nan, 2.0, 10.0, "below threshold"),
    (2.0, 2.0, 10.0, "pass"),                 # the threshold is the pass, as before: the test's points
    (6.99, 2.0, 10.0, "pass"),
    (7.0, 2.0, 10.0, "silver"),               # 70% of the reference's ratio on the same card
    (9.0, 2.0, 10.0, "gold"),                 # 90%
    (12.0, 2.0, 10.0, "gold"),
    (50.0, 2.0, None, "pass"),                # no reference figure for this card: no bonus tier is invented
    (1.5, 2.0, 2.0, "below threshold"),       # a bonus tier never comes without the pass
])
def test_tiers(ratio, threshold, reference, expected):
    assert thresholds.tier(ratio, threshold, reference) == expected


def test_tier_lines_say_what_they_were_measured_against():
    assert thresholds.tier_line(7.5, 2.0, 10.0, CARD) == (f"tier silver: 75% of the reference's 10.00x on {CARD} "
                                                          "(silver >= 70%, gold >= 90% of it; bonus only, no points)")
    assert thresholds.tier_line(7.5, 2.0, None, CARD) == \
        f"tier pass; no reference figure for this card ({CARD}), so no bonus tier"
    assert "no reference figure for this card (CPU)" in thresholds.tier_line(3.0, 2.0, None, None)


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    monkeypatch.setattr(thresholds, "PROFILES", tmp_path)
    thresholds._read_profile.cache_clear()
    yield tmp_path
    thresholds._read_profile.cache_clear()


def test_a_profile_keeps_thresholds_and_reference_ratios(profiles):
    path = thresholds.write_profile(CARD, thresholds={KEY: 5.5}, references={KEY: 14.8}, written_by="a test")
    assert path == profiles / "nvidia-fake-80gb.toml"
    assert thresholds.load_profile(CARD) == {KEY: 5.5}
    assert thresholds.load_references(CARD) == {KEY: 14.8}
    other = "inf20::test_flash_kernel_beats_naive_attention_at_4k"
    thresholds.write_profile(CARD, references={other: 19.17}, written_by="a test")      # merged, not replaced
    assert thresholds.load_profile(CARD) == {KEY: 5.5}
    assert thresholds.load_references(CARD) == {KEY: 14.8, other: 19.17}
    assert thresholds.load_references("NVIDIA Other") == {}


@pytest.mark.parametrize("text, problem", [
    ('gpu = "NVIDIA Other"\n', "not this card"),
    (f'gpu = "{CARD}"\n[reference]\n"{KEY}" = -1\n', "[reference] values must be positive numbers"),
    (f'gpu = "{CARD}"\n[references]\n"{KEY}" = 3\n', "unknown table(s) ['references']"),
    (f'gpu = "{CARD}"\n[reference\n', "is not valid TOML"),
])
def test_a_bad_profile_is_refused_with_a_message(profiles, text, problem):
    (profiles / "nvidia-fake-80gb.toml").write_text(text)
    with pytest.raises(ValueError, match=re.escape(problem)):
        thresholds.load_references(CARD)


def test_the_reference_figure_is_the_running_tests_on_this_card(profiles, monkeypatch):
    import torch
    thresholds.write_profile(CARD, references={f"{KEY}": 14.8}, written_by="a test")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: CARD)
    monkeypatch.setenv("PYTEST_CURRENT_TEST", f"exercises/inf12/test_batch_generate.py::{KEY.split('::')[1]} (call)")
    assert thresholds.reference_ratio("cuda") == (14.8, CARD)
    assert thresholds.reference_ratio("cpu") == (None, None)          # a CPU test on a GPU machine
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "exercises/inf12/test_batch_generate.py::test_other (call)")
    assert thresholds.reference_ratio("cuda") == (None, CARD)


def fake_work(dev: FakeDevice, seconds: float):
    def run(*args):
        dev.host(seconds)
        return seconds
    return run


class FakeBenchmark:
    """What compare uses of pytest-benchmark's fixture."""

    def __init__(self):
        self.name, self.group, self.extra_info, self.disabled, self.rounds = "test_x[4]", None, {}, False, None

    def pedantic(self, fn, rounds, iterations, warmup_rounds):
        self.rounds = rounds
        for _ in range(rounds):
            fn()


def test_compare_records_the_figure_and_tier_and_labels_the_benchmark(monkeypatch):
    """A fake clock: the baseline takes 4 ms, yours 1 ms, so 4.00x; the reference reached 5x on this card
    (80%: silver). The record carries the tier; pytest-benchmark's row says it times a whole round."""
    dev = FakeDevice()
    monkeypatch.setattr(timing, "_perf_counter", dev.clock)
    monkeypatch.setattr(thresholds, "reference_ratio", lambda device_type: (5.0, CARD))
    records, bench = [], FakeBenchmark()
    result = timing.compare(fake_work(dev, 0.001), fake_work(dev, 0.004), threshold=2.0, what="fake", rounds=5,
                            warmup=1, device_type="cpu", benchmark=bench, record=lambda *kv: records.append(kv))
    assert result.ratio == pytest.approx(4.0) and result.tier == "silver"
    (name, row), = records
    assert name == "speed" and (row["tier"], row["reference_ratio"], row["card"]) == ("silver", 5.0, CARD)
    assert row["key"] is None                                # a test outside a topic has no profile key
    assert bench.extra_info["tier"] == "silver" and bench.rounds == 5
    assert bench.name == "test_x[4] (one round = yours + the baseline)" and "paired" in bench.group
    assert thresholds.speed_line(row) == ("fake: speed-up 4.00x, threshold 2x, passed (yours 1 ms, baseline "
                                          "4 ms; medians of 5 paired rounds)")
    assert thresholds.row_tier(row) == ("silver", thresholds.tier_line(4.0, 2.0, 5.0, CARD))
    assert thresholds.row_tier(row)[1].startswith("tier silver: 80% of the reference's 5.00x")


class TwoStreams:
    """A fake GPU for time_call: a host clock, the current stream's queue and one other stream's queue, and
    events that, as CUDA's, complete when the current stream reaches them."""

    def __init__(self):
        self.now = self.main = self.side = 0.0

    def clock(self) -> float:
        return self.now

    def synchronize(self) -> None:                      # torch.cuda.synchronize: every stream
        self.now = max(self.now, self.main, self.side)

    def call(self, host_s: float, device_s: float, other_stream: bool):
        def run():
            self.now += host_s                           # Python and launch work
            if other_stream:
                self.side = max(self.side, self.now) + device_s
            else:
                self.main = max(self.main, self.now) + device_s
            return device_s
        return run

    def install(self, monkeypatch) -> None:
        class Event:
            def __init__(self, enable_timing=True):
                self.at = None

        def record(event):
            event.at = max(self.now, self.main)

        for name, value in (("_perf_counter", self.clock), ("_cuda_synchronize", self.synchronize),
                            ("_CudaEvent", Event), ("_event_record", record),
                            ("_event_elapsed", lambda a, b: (b.at - a.at) * 1e3)):
            monkeypatch.setattr(timing, name, value)


def test_work_left_on_another_cuda_stream_is_timed_to_its_end(monkeypatch):
    """A candidate that launches its 1 ms of work on another stream and returns: the current stream's events
    see only its 30 us of host work. time_call times it to the device's idle (the host's clock) and an honest
    call by its events; so compare finds no speed-up where, without that guard, it found 1.03/0.03 = 34x."""
    dev = TwoStreams()
    dev.install(monkeypatch)
    honest, hidden = dev.call(30e-6, 1e-3, other_stream=False), dev.call(30e-6, 1e-3, other_stream=True)
    assert timing.time_call(honest, (), "cuda")[0] == pytest.approx(1.03e-3)
    assert timing.time_call(hidden, (), "cuda")[0] == pytest.approx(1.03e-3)
    result = timing.compare(hidden, honest, threshold=2.0, what="fake", rounds=5, warmup=1, device_type="cuda")
    assert result.ratio == pytest.approx(1.0) and not result.passed
    monkeypatch.setattr(timing, "HIDDEN_WORK_SLACK_S", float("inf"))            # the events alone
    result = timing.compare(hidden, honest, threshold=2.0, what="fake", rounds=5, warmup=1, device_type="cuda")
    assert result.ratio == pytest.approx(1.03 / 0.03) and result.passed


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_work_left_on_another_cuda_stream_is_timed_on_a_gpu():
    """The same on a real GPU: a 4096^3 matmul launched on a side stream costs what it costs on the current one."""
    import torch
    x = torch.randn(4096, 4096, device="cuda")
    side = torch.cuda.Stream()

    def on_side():
        with torch.cuda.stream(side):
            return x @ x

    for fn in (on_side, lambda: x @ x):
        fn()
    main = sorted(timing.time_call(lambda: x @ x, (), "cuda")[0] for _ in range(9))[4]
    other = sorted(timing.time_call(on_side, (), "cuda")[0] for _ in range(9))[4]
    assert other > 0.7 * main, f"a side stream's matmul: {other * 1e3:.3f} ms, the current one's {main * 1e3:.3f}"


def test_lab_speed_repeat_measures_a_comparison_and_a_figure_that_many_times(monkeypatch):
    """The flip check's repeats (LAB_SPEED_REPEAT): `compare` and a figure test (inf02's curves) record the
    first measurement as `speed` and the others as `speed_repeat`; a bad value is refused with a message."""
    from lab import figures
    dev = FakeDevice()
    monkeypatch.setattr(timing, "_perf_counter", dev.clock)
    monkeypatch.setenv("LAB_SPEED_REPEAT", "3")
    records: list = []
    timing.compare(fake_work(dev, 0.001), fake_work(dev, 0.004), threshold=2.0, what="fake", rounds=3, warmup=1,
                   device_type="cpu", record=lambda *kv: records.append(kv))
    assert [name for name, _ in records] == ["speed", "speed_repeat", "speed_repeat"]
    figures_done = []
    for i in range(figures.speed_repeats()):
        figures.record_figure("slope", ratio=0.9 + i, threshold=0.5, repeat=i > 0,
                              record=lambda *kv: figures_done.append(kv))
    assert [(name, row["ratio"]) for name, row in figures_done] == [
        ("speed", 0.9), ("speed_repeat", 1.9), ("speed_repeat", 2.9)]
    monkeypatch.setenv("LAB_SPEED_REPEAT", "")
    assert timing.speed_repeats() == 1
    monkeypatch.setenv("LAB_SPEED_REPEAT", "ten")
    with pytest.raises(ValueError, match="LAB_SPEED_REPEAT must be a whole number of measurements, got 'ten'"):
        timing.speed_repeats()


def test_figure_tests_measure_lab_speed_repeat_times(tmp_path):
    """inf01's bandwidth agreement and inf02's curve tests on the solutions with LAB_SPEED_REPEAT=2 (inf02 in a
    small regime) on this CPU: each test records one `speed` and one `speed_repeat`, measured separately."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent('''
        import importlib.util, json, sys, torch
        def load(path):
            spec = importlib.util.spec_from_file_location(path.rsplit("/", 1)[-1][:-3], path)
            module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
            return module
        curves, bandwidth = load(sys.argv[1]), load(sys.argv[2])
        bandwidth.CPU_NUM_BYTES = 1 << 22
        curves.REGIMES["cpu"] = dict(shape="smollm2-135m", dtype=torch.float32, prompt_lens=(8, 16), num_new=2,
                                     repeats=1, warm_all=False)
        props = {}
        for test in (curves.test_ttft_grows_linearly_with_prompt_length, curves.test_tbt_stays_flat_with_context,
                     bandwidth.test_copy_bandwidth_agrees_with_the_lab):
            records = []
            try:
                test("cpu", lambda *kv: records.append(kv))
            except AssertionError:
                pass                                      # tiny prompts: the figure's verdict is not the point
            props[test.__name__] = [(name, row["ratio"]) for name, row in records]
        print(json.dumps(props))
    '''))
    env = {**os.environ, "LAB_SPEED_REPEAT": "2", "LAB_IMPL": "solutions"}
    out = subprocess.run([sys.executable, str(script), str(REPO_ROOT / "exercises/inf02/test_phase_curves.py"),
                          str(REPO_ROOT / "exercises/inf01/test_bandwidth.py")],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    props = json.loads(out.stdout.strip().splitlines()[-1])
    for rows in props.values():
        assert [name for name, _ in rows] == ["speed", "speed_repeat"]
    assert len(props) == 3
    ttft = props["test_ttft_grows_linearly_with_prompt_length"]
    assert ttft[0][1] != ttft[1][1], "the repeat must come from a second measurement, not a copy of the first"


def test_times_read_in_a_fitting_unit():
    assert [thresholds._seconds(s) for s in (0.000012, 0.544951, 7.8457)] == ["12 us", "545 ms", "7.85 s"]


def test_a_figure_is_shown_without_tiers():
    row = {"what": "TTFT exponent", "ratio": 1.02, "threshold": 0.5, "passed": True}       # lab.figures
    assert thresholds.speed_line(row) == "TTFT exponent: 1.02, threshold 0.5, passed (a measured figure, no tiers)"
    assert thresholds.row_tier(row) is None
    assert thresholds.speed_line({"what": "x", "ratio": "fast"}) == "x: no ratio recorded"


SPEED_TEST = '''
import pytest
import lab.timing as timing
from lab.fake_clock import FakeDevice


@pytest.mark.speed
def test_fast_enough(benchmark, record_property, monkeypatch):
    dev = FakeDevice()
    monkeypatch.setattr(timing, "_perf_counter", dev.clock)
    timing.compare(lambda: dev.host(0.001), lambda: dev.host(0.004), threshold=2.0, what="fake cache vs recompute",
                   rounds=3, warmup=1, device_type="cpu", benchmark=benchmark, record=record_property).assert_passes()
'''


def test_pytest_shows_a_passing_speed_tests_ratio_and_tier(tmp_path):
    """The lab's conftest (loaded as a plugin, the test file being outside the repo) prints a "speed"
    section on a pass, and pytest-benchmark's table says that a row is a whole paired round."""
    (tmp_path / "test_fake_speed.py").write_text(textwrap.dedent(SPEED_TEST))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                           str(tmp_path / "test_fake_speed.py")], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LAB_IMPL": "exercises"})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    section = out.split(" speed ")[-1]
    assert "test_fake_speed.py::test_fast_enough" in section
    assert "fake cache vs recompute: speed-up 4.00x, threshold 2x, passed (yours 1 ms, baseline 4 ms" in section
    assert "tier pass; no reference figure for this card (CPU), so no bonus tier" in section
    assert "test_fast_enough (one round = yours + the baseline)" in out



def test_gpu_check_write_records_the_references_median_ratio(profiles):
    """gpu_check's table of one card: a paired speed-up (its reference's median goes into [reference]) and a
    measured figure (lab.figures: no tiers, so no reference figure); a failing default gets a threshold."""
    from grading.tools import gpu_check, gpu_verdicts
    speedup = {"what": "batch 16", "threshold": 6.0, "paired": True, "solution": [7.0, 14.0, 15.0] + [14.5] * 7,
               "naive": {"one-at-a-time": [0.9] * 10}}
    figure = {"what": "TTFT exponent", "threshold": 0.5, "paired": False, "solution": [1.2] * 5 + [1.1] * 5,
              "naive": {}}
    report = {"topics": {"inf12": {"thresholds": {KEY: {**speedup, **gpu_verdicts.judge(speedup)}}},
                         "inf02": {"thresholds": {"inf02::test_ttft": {**figure, **gpu_verdicts.judge(figure)}}}}}
    row = report["topics"]["inf12"]["thresholds"][KEY]
    assert row["reference_median"] == 14.5 and not row["ok"] and row["misses"] and row["workable_threshold"] == 5.83
    assert report["topics"]["inf02"]["thresholds"]["inf02::test_ttft"]["ok"]
    assert gpu_verdicts.reference_figures(report) == {KEY: 14.5}
    few = {**speedup, "solution": speedup["solution"][:9]}          # one short of the rule: informs, never written
    short = {"topics": {"inf12": {"thresholds": {KEY: {**few, **gpu_verdicts.judge(few)}}}}}
    assert gpu_verdicts.reference_figures(short) == {}
    gpu_check.write_profile(CARD, {KEY: row["workable_threshold"]}, gpu_verdicts.reference_figures(report))
    assert thresholds.load_profile(CARD) == {KEY: 5.83} and thresholds.load_references(CARD) == {KEY: 14.5}


def test_calibrate_write_reference_keeps_gpu_medians_only(profiles, monkeypatch, capsys):
    from grading.tools import calibrate
    gpu = {"what": "batch 16", "threshold": 6.0, "candidate_s": 1.0, "baseline_s": 9.0, "passed": True,
           "card": CARD, "key": KEY}
    cpu = {**gpu, "what": "cached decode on CPU", "card": None,
           "key": "inf10::test_cached_decode_beats_recompute_on_cpu"}
    ratios = iter([9.0, 11.0, 10.0])
    monkeypatch.setattr(calibrate, "run_speed_tests",
                        lambda *a, **k: [{**gpu, "ratio": next(ratios)}, {**cpu, "ratio": 3.0}])
    references: dict = {}
    calibrate._measure("inf12", 3, [], 1, None, {}, [("solution", "solutions", [])], references)
    assert references == {(CARD, KEY): [9.0, 11.0, 10.0]}
    assert calibrate.write_references(references)[0].startswith("reference ratios: 1 written to ")
    assert thresholds.load_references(CARD) == {KEY: 10.0}
    assert "no reference figure recorded" in calibrate.write_references({})[0]


def speed_test(*cases, state="passed", gated=False):
    from grading.score import SPEED, Case, Tally, TestScore
    return TestScore("test_x_speed", SPEED, "exercises/inf98/test_x.py", Tally(2, 2, 2), state,
                     "speed points withheld until test_x passes" if gated else None,
                     [Case(f"t.py::test_x_speed[{i}]", s, speed=row) for i, (s, row) in enumerate(cases)], gated=gated)


def paired(ratio, reference=None):
    return {"what": "x", "ratio": ratio, "threshold": 2.0, "candidate_s": 1.0, "baseline_s": ratio,
            "card": "NVIDIA Fake" if reference else None, "reference_ratio": reference}


@pytest.mark.parametrize("test, tier", [
    (speed_test(("passed", paired(9.5, 10.0)), ("passed", paired(7.5, 10.0))), "silver"),  # the worst case's
    (speed_test(("passed", paired(9.5, 10.0)), ("failed", paired(1.5, 10.0)), state="partial"), "below threshold"),
    (speed_test(("failed", paired(9.5, 10.0)), state="failed"), None),     # failed for another reason than speed
    (speed_test(("passed", paired(9.5, 10.0)), state="gated", gated=True), "withheld"),
    (speed_test(("not graded on this hardware", paired(9.5, 10.0)), state="not graded on this hardware"), None),
    (speed_test(("passed", {"what": "exponent", "ratio": 1.0, "threshold": 0.5})), None),      # a figure
])
def test_a_speed_tests_tier_is_shown_and_changes_no_points(test, tier):
    from grading.score import _tier
    _tier(test)
    assert test.tier == tier
    assert (test.tally.earned, test.tally.possible_here, test.tally.possible) == (2, 2, 2)


def test_a_speed_test_on_the_device_fixture_is_a_gpu_test_where_a_gpu_is(monkeypatch):
    """gpu_check selects `-m "speed and gpu"`: inf01's and inf02's speed tests measure on the `device`
    fixture, so on a GPU machine they are GPU tests (the hook marks them); on a CPU they stay as they are."""
    import importlib.util                   # the repository's conftest by path: `import conftest` may find another
    spec = importlib.util.spec_from_file_location("lab_root_conftest", REPO_ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    class Item:
        def __init__(self, fixtures, speed):
            self.fixturenames, self.markers = fixtures, (["speed"] if speed else [])

        def get_closest_marker(self, name):
            return name if name in self.markers else None

        def add_marker(self, mark):
            self.markers.append(mark.name)

    def items():
        return [Item(["device", "record_property"], True), Item(["rng"], True), Item(["device"], False)]

    monkeypatch.setattr(conftest, "_has_cuda", lambda min_devices=1: True)
    on_gpu = items()
    conftest.pytest_collection_modifyitems(None, on_gpu)
    assert [i.markers for i in on_gpu] == [["speed", "gpu"], ["speed"], []]
    monkeypatch.setattr(conftest, "_has_cuda", lambda min_devices=1: False)
    on_cpu = items()
    conftest.pytest_collection_modifyitems(None, on_cpu)
    assert [i.markers for i in on_cpu] == [["speed"], ["speed"], []]


def test_the_committed_profiles_name_real_speed_tests():
    """Each card's profile loads, and every key names a speed test that exists: a renamed test would lose its
    tiers (or a card its threshold) without a word."""
    import tomllib
    files = sorted(thresholds.PROFILES.glob("*.toml"))
    assert files, "no card profile is committed"
    for path in files:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert thresholds.load_references(data["gpu"]) == data.get("reference", {})
        for key in [*data.get("thresholds", {}), *data.get("reference", {})]:
            topic, test = key.split("::", 1)
            name = test.split("[", 1)[0]
            sources = [p.read_text(encoding="utf-8") for p in (REPO_ROOT / "exercises" / topic).glob("test_*.py")]
            assert any(re.search(rf"^def {re.escape(name)}\(", s, re.M) and "mark.speed" in s for s in sources), \
                f"{path.name}: {key} names no speed test in exercises/{topic}"


def test_gpu_check_pools_calls_that_each_held_one_process(tmp_path, capsys, profiles):
    """`--merge`: a calibration too long for one call (inf10, inf12) is pooled from several `--runs 1` calls of
    the same card and judged as one; another card's or another threshold's report is refused; pooling needs
    no GPU (`--skip-correctness --skip-speed`)."""
    from grading.tools import gpu_check, gpu_verdicts

    def call(solution, naive, card=CARD, threshold=6.0):
        row = {"what": "batch 16", "threshold": threshold, "paired": True, "solution": solution,
               "naive": {"one-at-a-time": naive}}
        return {"card": card, "torch": "2.11", "runs": 1, "repeat": 2, "seconds": 100.0,
                "topics": {"inf12": {"thresholds": {KEY: {**row, **gpu_verdicts.judge(row)}}}}}

    paths = []
    for i, report in enumerate([call([14.9, 14.8, 14.6, 15.1], [0.9] * 4), call([14.7, 15.0, 14.8], [0.95, 0.9, 0.9]),
                                call([14.5, 14.9, 15.2], [0.9] * 3), call([7.0, 14.0], [0.9])]):
        paths.append(tmp_path / f"call{i}.json")
        paths[-1].write_text(json.dumps(report))
    out = tmp_path / "pooled.json"
    pool = ["--skip-correctness", "--skip-speed", "--json", str(out)]
    # Two calls hold 7 measurements a side: the table says so, and nothing is written for the card yet.
    assert gpu_check.main(pool + ["--merge", str(paths[0]), "--merge", str(paths[1]), "--write"]) == 1
    assert "too few measurements to calibrate (the reference 7; the rule asks 10 each" \
        in capsys.readouterr().out and thresholds.load_references(CARD) == {} and thresholds.load_profile(CARD) == {}
    assert gpu_check.main(pool + sum((["--merge", str(p)] for p in paths[:3]), []) + ["--write"]) == 0
    row = json.loads(out.read_text())["topics"]["inf12"]["thresholds"][KEY]
    assert row["solution"] == [14.9, 14.8, 14.6, 15.1, 14.7, 15.0, 14.8, 14.5, 14.9, 15.2]
    assert row["naive"]["one-at-a-time"] == [0.9] * 4 + [0.95, 0.9, 0.9] + [0.9] * 3
    assert row["ok"] and thresholds.load_references(CARD) == {KEY: 14.85}
    printed = capsys.readouterr().out
    assert "| 14.50-15.20, 14.85; 10 | 0.95; 10 | 0 | ok |" in printed
    assert " 300 s in the pooled calls together" in printed                   # the three calls' own times
    assert gpu_check.main(pool + sum((["--merge", str(p)] for p in paths), [])) == 1
    assert "the reference's worst ratio 7.00" in capsys.readouterr().out          # one slow call breaks the pool
    other = tmp_path / "other.json"
    other.write_text(json.dumps(call([15.0], [0.9], card="NVIDIA Other")))
    assert gpu_check.main(pool + ["--merge", str(paths[0]), "--merge", str(other)]) == 2
    assert "calibrate each card on its own" in capsys.readouterr().err
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(call([15.0], [0.9], threshold=5.0)))
    assert gpu_check.main(pool + ["--merge", str(paths[0]), "--merge", str(moved)]) == 2
    assert "threshold 5 in one report, 6 in another" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(pool + ["--merge", str(tmp_path / "missing.json")])
    assert stop.value.code == 2 and "cannot read a gpu_check JSON there" in capsys.readouterr().err


def fake_gpu(monkeypatch, tmp_path):
    """gpu_check on a fake CUDA card with three topics (inf12 has one naive version); returns the module."""
    from types import SimpleNamespace

    import torch

    from grading.tools import gpu_check
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: CARD)
    monkeypatch.setattr(gpu_check, "gpu_topics", lambda: ["inf00", "inf11", "inf12"])
    monkeypatch.setattr(gpu_check, "planted_versions", lambda topic: [SimpleNamespace(
        name="one-at-a-time", naive=True, naive_for=[])] if topic == "inf12" else [])
    monkeypatch.setattr(gpu_check, "materialized", lambda planted: __import__("contextlib").nullcontext(tmp_path))
    return gpu_check


def fake_ratios(topic, impl, repeat):
    naive = impl != "solutions"
    return [] if topic == "inf00" else [(f"{topic}::test_x", {"what": "x", "threshold": 6.0, "ratio": 1.0 if naive
                                                             else 15.0, "candidate_s": 1.0, "card": CARD})] * repeat


def test_gpu_check_leaves_what_it_measured_when_a_time_limit_kills_it(tmp_path, monkeypatch, capsys, profiles):
    """A call killed mid-way (the device's 10-minute window) leaves its JSON as of its last finished process,
    marked partial; `--merge` pools it with a later call's, which then makes up the rule's ten measurements."""
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    processes = []

    def measure(topic, impl, repeat, out, tests=None, fork=False, seconds=None):
        processes.append((topic, impl))
        if len(processes) == 8:                 # inf12's second naive process: the time limit strikes
            raise KeyboardInterrupt
        return fake_ratios(topic, impl, repeat)

    monkeypatch.setattr(gpu_check, "measure", measure)
    monkeypatch.setattr(gpu_check, "check_correctness",
                        lambda topic, out, fork: {"passed": 1, "failed": [], "skipped": 0})
    cut = tmp_path / "cut.json"
    with pytest.raises(KeyboardInterrupt):
        gpu_check.main(["--json", str(cut)])
    left = json.loads(cut.read_text())
    assert left["partial"] is True and not list(tmp_path.glob("*.tmp"))
    assert all(left["topics"][t]["correctness"]["passed"] == 1 for t in ("inf00", "inf11", "inf12"))
    assert len(left["topics"]["inf11"]["thresholds"]["inf11::test_x"]["solution"]) == 10
    row = left["topics"]["inf12"]["thresholds"]["inf12::test_x"]
    assert (len(row["solution"]), len(row["naive"]["one-at-a-time"])) == (7, 1) and not row["ok"]
    assert "too few measurements" in row["problems"][0]
    monkeypatch.setattr(gpu_check, "measure",
                        lambda topic, impl, repeat, out, tests, fork, seconds: fake_ratios(topic, impl, repeat))
    rest = tmp_path / "rest.json"
    assert gpu_check.main(["--skip-correctness", "--topics", "inf12", "--runs", "2", "--measurements", "6",
                           "--json", str(rest), "--merge", str(cut)]) == 0
    pooled = json.loads(rest.read_text())
    row = pooled["topics"]["inf12"]["thresholds"]["inf12::test_x"]
    assert (len(row["solution"]), len(row["naive"]["one-at-a-time"])) == (13, 4) and row["ok"]
    assert "partial" not in pooled


def test_gpu_check_runs_correctness_at_once_then_ten_measurements_in_three_processes(tmp_path, monkeypatch, capsys,
                                                                                       profiles):
    """One pass of `make gpu-check`, with the GPU and the pytest processes faked: every topic's correctness
    processes run `--jobs` at a time and all before the first speed process; each implementation then gets
    three processes: the reference 4, 3 and 3 measurements (the flip check's ten), a naive version far below its
    threshold one in each; a topic whose first reference process measured nothing (no speed test runs on a GPU)
    gets no further process."""
    import threading
    import time as time_

    gpu_check = fake_gpu(monkeypatch, tmp_path)
    events, running, lock = [], [], threading.Lock()

    def check_correctness(topic, out, fork):
        with lock:
            running.append(topic)
            events.append(("correctness", topic, len(running)))
        time_.sleep(0.2)
        with lock:
            running.remove(topic)
        return {"passed": 2, "failed": [], "skipped": 0}

    def measure(topic, impl, repeat, out, tests, fork, seconds):
        events.append(("speed", topic, impl, repeat))
        return fake_ratios(topic, impl, repeat)

    monkeypatch.setattr(gpu_check, "check_correctness", check_correctness)
    monkeypatch.setattr(gpu_check, "measure", measure)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--jobs", "3", "--json", str(out)]) == 0
    kinds = [e[0] for e in events]
    assert kinds[:3] == ["correctness"] * 3 and "correctness" not in kinds[3:]
    assert max(e[2] for e in events if e[0] == "correctness") == 3                 # all three at once
    speed = [e[1:] for e in events if e[0] == "speed"]
    assert speed == [("inf00", "solutions", 4),
                     ("inf11", "solutions", 4), ("inf11", "solutions", 3), ("inf11", "solutions", 3),
                     ("inf12", "solutions", 4), ("inf12", str(tmp_path), 1), ("inf12", "solutions", 3),
                     ("inf12", str(tmp_path), 1), ("inf12", "solutions", 3), ("inf12", str(tmp_path), 1)]
    report = json.loads(out.read_text())
    row = report["topics"]["inf12"]["thresholds"]["inf12::test_x"]
    assert report["repeat"] == [4, 3, 3] and len(row["solution"]) == 10 and len(row["naive"]["one-at-a-time"]) == 3
    assert report["naive_repeat"] == [1, 1, 1] and row["ok"]
    assert report["topics"]["inf00"]["thresholds"] == {}
    assert report["seconds"] >= 0.2 and all(t["speed_seconds"] >= 0 for t in report["topics"].values())
    printed = capsys.readouterr().out
    assert "inf00: no speed test measured on this GPU; nothing to calibrate" in printed
    assert "3 process(es), 4+3+3 measurements per implementation (1+1+1 of a naive version far below its " \
        "threshold)" in printed
    for bad in (["--jobs", "0"], ["--runs", "3", "--measurements", "2"], ["--repeat", "0"]):
        with pytest.raises(SystemExit) as stop:
            gpu_check.main(bad)
        assert stop.value.code == 2


def test_gpu_check_stops_running_correctness_topics_on_sigterm(tmp_path, monkeypatch):
    """SIGTERM (taken as Ctrl-C: processes.run_cli) or Ctrl-C during the correctness step, whose topics run
    `--jobs` at a time in threads: the topics' process groups are killed at once. Leaving the thread pool used
    to wait for each running topic to end by itself, up to the 30-minute test limit."""
    import signal
    import time as time_

    from grading import processes
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    started = []

    def check_correctness(topic, out, fork):
        if topic == "inf12":
            time_.sleep(1.0)                    # the others are running by now
            os.kill(os.getpid(), signal.SIGTERM)        # `timeout` or `kill` on gpu_check
            return {"passed": 0, "failed": [], "skipped": 0}
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        started.append(proc)
        processes._LIVE.add(proc)               # as processes.execute registers a topic's process
        try:
            proc.wait()
        finally:
            processes._LIVE.discard(proc)
        return {"passed": 0, "failed": ["killed"], "skipped": 0}

    monkeypatch.setattr(gpu_check, "check_correctness", check_correctness)
    began = time_.monotonic()
    with pytest.raises(processes.Terminated), processes.terminate_as_interrupt():
        gpu_check.check_all(["inf00", "inf11", "inf12"], tmp_path, 3, began)
    assert time_.monotonic() - began < 30 and len(started) == 2
    assert all(proc.poll() is not None for proc in started), "a topic's process outlived Ctrl-C"


def test_gpu_check_runs_a_naive_version_only_on_the_tests_it_is_the_baseline_of(tmp_path, monkeypatch, profiles):
    """inf21's two naive versions are each the baseline of one of its two GPU speed tests (`naive_for`): after the
    reference's first process, each naive process runs only its own test (`-k`), and its ratios count only there."""
    from types import SimpleNamespace
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    monkeypatch.setattr(gpu_check, "gpu_topics", lambda: ["inf21"])
    monkeypatch.setattr(gpu_check, "planted_versions", lambda topic: [
        SimpleNamespace(name="expand-copies-kv", naive=True, naive_for=["gqa_attention decode"]),
        SimpleNamespace(name="kernel-per-query-head", naive=True, naive_for=["Triton GQA decode kernel"])])
    whats = {"test_gqa8_decode_beats_mha32_on_gpu": "gqa_attention decode, batch 8",
             "test_gqa8_decode_kernel_beats_mha32_on_gpu[bf16]": "Triton GQA decode kernel, batch 8"}
    calls = []

    def measure(topic, impl, repeat, out, tests, fork, seconds=None):
        calls.append((impl, tests))
        ratio = 3.0 if impl == "solutions" else 0.5
        return [(f"inf21::{name}", {"what": what, "threshold": 2.0, "ratio": ratio, "candidate_s": 1.0, "card": CARD})
                for name, what in whats.items() if tests is None or name.split("[")[0] in tests] * repeat

    monkeypatch.setattr(gpu_check, "measure", measure)
    table = gpu_check.calibrate_topic("inf21", [4, 3, 3], tmp_path, 0.0)
    assert calls[0] == ("solutions", None) and all(tests is None for impl, tests in calls if impl == "solutions")
    naive_calls = [tests for impl, tests in calls if impl != "solutions"]
    assert naive_calls == [["test_gqa8_decode_beats_mha32_on_gpu"], ["test_gqa8_decode_kernel_beats_mha32_on_gpu"]] * 3
    gqa, kernel = table["inf21::test_gqa8_decode_beats_mha32_on_gpu"], \
        table["inf21::test_gqa8_decode_kernel_beats_mha32_on_gpu[bf16]"]
    assert len(gqa["solution"]) == len(kernel["solution"]) == 10
    assert list(gqa["naive"]) == ["expand-copies-kv"] and list(kernel["naive"]) == ["kernel-per-query-head"]
    assert len(gqa["naive"]["expand-copies-kv"]) == len(kernel["naive"]["kernel-per-query-head"]) == 10
    assert gpu_check.baseline_tests([], ["x"]) == []


def test_gpu_check_measures_a_naive_version_near_its_threshold_the_rules_ten_times(tmp_path, monkeypatch, capsys,
                                                                                   profiles):
    """A naive version far below its threshold takes one measurement per process (three in all: issue 10's 20
    minutes); one whose reading comes within 20% under it (inf21's kernel-per-query-head, 1.7 against 2.0) takes
    what makes its total the reference's ten in its remaining processes, so a flip to a pass would show; judge()
    asks ten of it, three of a far one. A naive version whose first process gave no ratio (inf33's no-reuse
    fails its test's reuse check) is not run again."""
    from types import SimpleNamespace

    from grading.tools import gpu_verdicts
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    monkeypatch.setattr(gpu_check, "planted_versions", lambda topic: [
        SimpleNamespace(name="expand-copies-kv", naive=True, naive_for=["gqa_attention decode"]),
        SimpleNamespace(name="kernel-per-query-head", naive=True, naive_for=["Triton GQA decode kernel"]),
        SimpleNamespace(name="no-ratio", naive=True, naive_for=[])])
    whats = {"test_gqa": "gqa_attention decode, batch 8", "test_kernel": "Triton GQA decode kernel, batch 8"}
    ratio = {"solutions": 3.0, "expand-copies-kv": 0.5, "kernel-per-query-head": 1.7}
    calls = []

    def measure(topic, impl, repeat, out, tests, fork, seconds=None):
        name = "solutions" if impl == "solutions" else ("expand-copies-kv" if tests == ["test_gqa"] else
                                                         "kernel-per-query-head" if tests else "no-ratio")
        calls.append((name, repeat))
        if name == "no-ratio":
            return []
        return [(f"inf21::{test}", {"what": what, "threshold": 2.0, "ratio": ratio[name], "candidate_s": 1.0,
                                    "card": CARD})
                for test, what in whats.items() if tests is None or test in tests] * repeat

    monkeypatch.setattr(gpu_check, "measure", measure)
    assert gpu_check.naive_plan([4, 3, 3], 3) == [1, 1, 1] and gpu_check.naive_plan([4, 3, 3], 5) == [2, 2, 1]
    assert gpu_check.naive_plan([2], 3) == [2] and gpu_check.naive_plan([4, 3, 3], 20) == [4, 3, 3]
    # near in the second process: the third takes the rest; in the last: nothing is left to run, and judge()
    # then reads the row as too few measurements (pool more with --merge)
    assert gpu_check.escalated([1, 1, 1], 2, 10) == [1, 1, 8] and gpu_check.escalated([1, 1, 1], 3, 10) == [1, 1, 1]
    table = gpu_check.calibrate_topic("inf21", [4, 3, 3], tmp_path, 0.0, naive_repeats=[1, 1, 1])
    assert [r for name, r in calls if name == "expand-copies-kv"] == [1, 1, 1]
    assert [r for name, r in calls if name == "kernel-per-query-head"] == [1, 5, 4]
    assert [r for name, r in calls if name == "solutions"] == [4, 3, 3]
    assert [r for name, r in calls if name == "no-ratio"] == [1]
    printed = capsys.readouterr().out
    assert "kernel-per-query-head came within 20% of a threshold: 1+5+4 measurements" in printed
    assert "no-ratio gave no ratio" in printed and "expand-copies-kv gave no ratio" not in printed
    rows = gpu_verdicts.judged(table)
    assert rows["inf21::test_gqa"]["ok"] and rows["inf21::test_kernel"]["ok"]
    short = {**table["inf21::test_kernel"], "naive": {"kernel-per-query-head": [1.7] * 3}}
    assert "too few measurements to calibrate (kernel-per-query-head 3;" in gpu_verdicts.judge(short)["problems"][0]
    assert gpu_verdicts.judge({**short, "naive": {"kernel-per-query-head": [1.5] * 3}})["ok"]      # 75%: far below


def test_gpu_check_says_where_each_speed_process_spent_its_seconds(tmp_path, monkeypatch, capsys, profiles):
    """Issue 10's 20 minutes: after each speed process a line splits its seconds (pytest's tests; of those,
    lab.timing.compare's warm-up and measuring rounds; the process's start, collection and exit), and the JSON
    keeps the split per process under the topic's "processes"."""
    from grading import runner
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    speeds = [{"what": "x", "threshold": 1.5, "ratio": 1.9, "candidate_s": 1.0, "card": CARD, "warmup_s": 1.25,
               "measuring_s": 3.0}, {"what": "x", "threshold": 1.5, "ratio": 1.9, "candidate_s": 1.0, "card": CARD,
                                     "warmup_s": 0.0, "measuring_s": 2.0}]

    def run_topic(root, topic, impl, limits, out, **kw):
        return runner.TopicRun(topic, exit_code=0, duration_s=9.04, tests={
            "exercises/inf11/test_cast.py::test_x": {"duration_s": 7.5, "speeds": speeds},
            "exercises/inf11/test_cast.py::test_y": {"duration_s": None, "speeds": []}})

    monkeypatch.setattr(gpu_check, "run_topic", run_topic)
    out = tmp_path / "report.json"
    gpu_check.main(["--skip-correctness", "--topics", "inf11", "--runs", "1", "--measurements", "2",
                    "--json", str(out)])
    split = {"process_s": 9.0, "tests_s": 7.5, "warmup_s": 1.2, "measuring_s": 5.0}
    assert json.loads(out.read_text())["topics"]["inf11"]["processes"] == [{"impl": "solution", "process": 1, **split}]
    assert "9.0 s: tests 7.5 (warm-up 1.2, measuring 5.0, the rest 1.3), start, collection and exit 1.5" \
        in capsys.readouterr().out
    # with the plugin's pytest phases and the runner's process phases: fixtures, start and exit apart
    full = gpu_check.split_seconds(9.04, [7.5, 0.02], speeds, [{"setup": 0.3, "call": 7.0, "teardown": 0.2},
                                                               {"setup": 0.01, "call": 0.0, "teardown": 0.01}],
                                   {"start_s": 1.04, "exit_s": 0.37})
    assert full == {"process_s": 9.0, "tests_s": 7.5, "warmup_s": 1.2, "measuring_s": 5.0, "fixtures_s": 0.5,
                    "start_s": 1.0, "exit_s": 0.4}
    assert gpu_check.seconds_line(full).endswith(
        "9.0 s: tests 7.5 (warm-up 1.2, measuring 5.0, fixtures 0.5, the rest 0.8), start and collection 1.0, "
        "exit 0.4, other 0.1")


def test_gpu_check_preload_forks_every_topic_process(tmp_path, monkeypatch, profiles):
    """Forking from the warm server (grading.forkserver; the default since session 10, `--preload` says so
    too) reaches every pytest process gpu_check starts, correctness and speed, and is recorded in the JSON;
    with `--fresh` every process is a fresh interpreter; both flags at once are refused with a line."""
    from grading import runner
    gpu_check = fake_gpu(monkeypatch, tmp_path)
    forks = []

    def run_topic(root, topic, impl, limits, out, **kw):
        forks.append(kw.get("fork"))
        return runner.TopicRun(topic, exit_code=0)

    monkeypatch.setattr(gpu_check, "run_topic", run_topic)
    for flag, want in ((["--preload"], True), ([], True), (["--fresh"], False)):
        forks.clear()
        out = tmp_path / f"report{'-'.join(flag)}.json"
        gpu_check.main([*flag, "--topics", "inf11", "--json", str(out)])
        assert forks and all(fork is want for fork in forks), flag
        assert json.loads(out.read_text())["preload"] is want
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--preload", "--fresh", "--topics", "inf11"])
    assert stop.value.code == 2
