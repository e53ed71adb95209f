"""The scorecard document: one plain dict (JSON) that every output is a view of.

`build()` turns scored topics into the document described by `grading/scorecard_schema.json`; the
terminal table, Markdown, Gradescope `results.json` and JUnit XML are all rendered from it, so they can
never disagree. Invariants: only JSON types inside; points rounded to 4 decimals; topics in the order
they were graded, tests in the order they ran (then those that never ran, in table order).
"""
from __future__ import annotations

import datetime as _dt

from grading.score import Tally, TestScore, TopicScore

SCHEMA_ID = "lab-scorecard/1"


def tally(t: Tally) -> dict:
    return {"earned": round(t.earned, 4), "possible_here": round(t.possible_here, 4),
            "possible": round(t.possible, 4)}


def _test(test: TestScore) -> dict:
    return {"name": test.name, "file": test.file, "category": test.category, "state": test.state,
            "message": test.message, "points": tally(test.tally), "requires": test.requires,
            "gated": test.gated, "warning": test.warning, "speed_line": test.speed_line, "tier": test.tier,
            "tier_line": test.tier_line,
            "cases": [{"nodeid": c.nodeid, "state": c.state, "message": c.message,
                       "duration_s": round(c.duration_s, 4), "markers": c.markers, "speed": c.speed}
                      for c in test.cases]}


def _topic(score: TopicScore) -> dict:
    run = score.run
    return {"topic": score.topic, "status": score.status, "message": score.message, "seed": run.seed,
            "duration_s": round(run.duration_s, 3), "exit_code": run.exit_code,
            "log": str(run.log_path) if run.log_path else None, "points": tally(score.total),
            "correctness": tally(score.correctness), "speed": tally(score.speed), "errors": score.errors,
            "tests": [_test(t) for t in score.tests]}


def build(scores: list[TopicScore], *, impl: str, root: str, hardware: dict, started_at: _dt.datetime,
          duration_s: float, test_timeout_s: float, topic_timeout_s: float) -> dict:
    """The whole scorecard as a JSON-ready dict."""
    total, correctness, speed = Tally(), Tally(), Tally()
    for score in scores:
        total.add(score.total)
        correctness.add(score.correctness)
        speed.add(score.speed)
    seeds = {s.topic: s.run.seed for s in scores}
    distinct = {seed for seed in seeds.values() if seed is not None}
    warnings = [f"{s.topic}: {t.warning}" for s in scores for t in s.tests if t.warning]
    return {
        "schema": SCHEMA_ID,
        "impl": impl,
        "root": root,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 3),
        "limits": {"test_timeout_s": test_timeout_s, "topic_timeout_s": topic_timeout_s},
        "hardware": hardware,
        "seed": distinct.pop() if len(distinct) == 1 else None,
        "seeds": seeds,
        "totals": {"points": tally(total), "correctness": tally(correctness), "speed": tally(speed)},
        "warnings": warnings,
        "topics": [_topic(s) for s in scores],
    }
