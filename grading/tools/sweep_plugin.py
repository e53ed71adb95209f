"""The pytest plugin behind `python -m grading sweep`: runs each collected test once per base seed.

Each run sets the base seed exactly as `--seed BASE` would (conftest.py's `seed` fixture mixes it with the
test's id), so a failure the sweep reports replays with `pytest exercises/infNN --seed BASE -k <test>`.
Tests that do not ask for `seed` (or `rng`) run once. Tests marked `slow`, that load the real model or its
tokenizer, or whose second run takes over `slow_after` seconds (Triton-interpreter children, perplexity) run
over the first `slow_seeds` bases only. Session and module fixtures are shared across the
runs (only the test's own function-scoped fixtures are set up again), so one process sweeps a whole topic.

Results go to the JSON file named by LAB_SWEEP_OUT: {nodeid: {"seeds": n, "failed": [[base, message], ...]}}.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

EXPENSIVE_FIXTURES = {"real_model", "tokenizer"}


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr)
    return " ".join(text.split())[:300]


class SweepPlugin:
    def __init__(self, first: int, seeds: int, slow_seeds: int, out: Path | None, slow_after: float = 2.0):
        self.first, self.seeds, self.slow_seeds, self.out = first, seeds, slow_seeds, out
        self.slow_after = slow_after
        self.results: dict[str, dict] = {}

    def bases(self, item) -> list[int]:
        if "seed" not in item.fixturenames:
            return [self.first]
        expensive = item.get_closest_marker("slow") or EXPENSIVE_FIXTURES & set(item.fixturenames)
        return list(range(self.first, self.first + (self.slow_seeds if expensive else self.seeds)))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        config = item.config
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        bases = self.bases(item)
        failed, shown, outcome, runs, started = [], None, "passed", 0, time.perf_counter()
        second = started
        for i, base in enumerate(bases):
            if i == 1:
                second = time.perf_counter()
            # a slow test gets fewer seeds: judged by its second run (the first pays for imports and warm-up)
            if i == 2 and time.perf_counter() - second > self.slow_after:
                bases = bases[:max(self.slow_seeds, 2)]
            config._lab_seed = base
            os.environ["LAB_SEED"] = str(base)
            last = i >= len(bases) - 1 or item.session.shouldstop
            # between seeds tear down the test's own fixtures only (keep the module's and the session's)
            reports = runtestprotocol(item, log=False, nextitem=nextitem if last else item.parent)
            runs += 1
            if any(r.failed for r in reports):
                failed.append([base, _message(next(r for r in reports if r.failed))])
                shown = shown or reports
            elif any(r.skipped for r in reports) and not failed:
                outcome, shown = "skipped", reports        # no GPU, not graded here: the same for every seed
                if not last:
                    item.session._setupstate.teardown_exact(nextitem)
                break
            if last:
                break
        for report in shown or reports:
            ihook.pytest_runtest_logreport(report=report)
        self.results[item.nodeid] = {"seeds": runs if outcome != "skipped" else 0,
                                     "cpu_s": round(time.perf_counter() - started, 2),
                                     "outcome": "failed" if failed else outcome, "failed": failed}
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        self.write()                            # after every test: an interrupted sweep keeps what it found
        return True

    def write(self) -> None:
        if self.out is not None:
            self.out.write_text(json.dumps(self.results, indent=1))

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        tr.section("seed sweep")
        for nodeid, result in self.results.items():
            name = nodeid.split("::", 1)[-1]
            if result["outcome"] == "skipped":
                tr.line(f"  skipped   {name}")
                continue
            fails = result["failed"]
            line = f"  {len(fails):3d}/{result['seeds']:<4d} {name}"
            if fails:
                line += "  seeds " + ", ".join(str(b) for b, _ in fails[:12]) + (" ..." if len(fails) > 12 else "")
            tr.line(line)
            if fails:
                tr.line(f"            first: {fails[0][1]}")

    def pytest_unconfigure(self, config):
        self.write()


def pytest_configure(config):
    first = int(os.environ.get("LAB_SWEEP_FIRST", "0"))
    seeds = int(os.environ.get("LAB_SWEEP_SEEDS", "200"))
    slow = int(os.environ.get("LAB_SWEEP_SLOW_SEEDS", "20"))
    out = os.environ.get("LAB_SWEEP_OUT")
    slow_after = float(os.environ.get("LAB_SWEEP_SLOW_AFTER", "2.0"))
    config.pluginmanager.register(SweepPlugin(first, seeds, slow, Path(out) if out else None, slow_after),
                                  "lab-sweep")
