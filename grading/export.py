"""Scorecards for machines: JSON, Gradescope `results.json` and JUnit XML, rendered from the document.

Invariants: points come only from the scorecard document (`grading.scorecard.build`); the Gradescope
dict validates against `grading/gradescope_schema.json` (Gradescope's documented format); a test that
this hardware cannot run is left out of Gradescope's `tests` (it would read as a zero or, with
max_score 0, as a pass) and listed in `extra_data.not_graded_here` and the Markdown output instead.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from grading import report
from lab.thresholds import speed_line
from grading.score import (CRASHED, ERROR, FAILED, GATED, MISSING, NOT_HERE, NOT_RUN, NOT_STARTED, PASSED,
                           SKIPPED, TIMED_OUT)

_JUNIT_FAILURE = {FAILED, NOT_STARTED, GATED}
_JUNIT_ERROR = {ERROR, CRASHED, TIMED_OUT, MISSING}
_JUNIT_SKIPPED = {SKIPPED, NOT_HERE, NOT_RUN}


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def json_text(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


HIDDEN_VISIBILITY = "after_published"       # hidden tests: shown once the instructor publishes grades


def is_hidden(test: dict) -> bool:
    return test["name"].startswith("test_hidden_") or (test.get("file") or "").startswith("grading/hidden/")


def _gradescope_test(topic: str, test: dict) -> dict:
    p = test["points"]
    lines = [f"{test['state']}" + (f": {test['message']}" if test["message"] else "")]
    lines += [f"warning: {test['warning']}"] if test["warning"] else []
    lines += [text for text in (test.get("speed_line"), test.get("tier_line")) if text]    # tiers: no points
    return {"name": f"{topic} {test['name']}", "score": p["earned"], "max_score": p["possible_here"],
            "status": "passed" if test["state"] == PASSED else "failed", "output": "\n".join(lines),
            "output_format": "text", "visibility": HIDDEN_VISIBILITY if is_hidden(test) else "visible",
            "tags": [topic, test["category"]] + (["hidden"] if is_hidden(test) else [])}


def _leaderboard(doc: dict) -> list[dict]:
    """Total points, then each speed test's speed-up (baseline / yours: higher is better)."""
    board = [{"name": "points", "value": doc["totals"]["points"]["earned"], "order": "desc"}]
    for topic in doc["topics"]:
        for test in topic["tests"]:
            ratios = [c["speed"]["ratio"] for c in test["cases"]
                      if c["speed"] and isinstance(c["speed"].get("ratio"), (int, float))]
            if test["category"] == "speed" and ratios:
                board.append({"name": f"{topic['topic']} {test['name']} speed-up",
                              "value": round(min(ratios), 4), "order": "desc"})
    return board


def gradescope(doc: dict) -> dict:
    """Gradescope's results.json: one test per base test gradable here, the Markdown scorecard on top."""
    tests, not_here = [], []
    for topic in doc["topics"]:
        for test in topic["tests"]:
            if test["points"]["possible_here"] == 0 and test["points"]["possible"] > 0:
                not_here.append(f"{topic['topic']} {test['name']}")
            else:
                tests.append(_gradescope_test(topic["topic"], test))
    totals = doc["totals"]["points"]
    return {"score": totals["earned"], "execution_time": int(round(doc["duration_s"])),
            "output": report.markdown(doc), "output_format": "md", "test_output_format": "text",
            "stdout_visibility": "hidden", "tests": tests, "leaderboard": _leaderboard(doc),
            "extra_data": {"possible_here": totals["possible_here"], "possible": totals["possible"],
                           "impl": doc["impl"], "seed": doc["seed"], "seeds": doc["seeds"],
                           "hardware": doc["hardware"], "not_graded_here": not_here,
                           "statuses": {t["topic"]: t["status"] for t in doc["topics"]},
                           "submission": doc.get("submission")}}


def _junit_case(parent: ET.Element, topic: str, test: dict, case: dict | None) -> str:
    """Append one <testcase>; returns its state."""
    nodeid = case["nodeid"] if case else f"{test['file'] or 'exercises/' + topic}::{test['name']}"
    file, _, name = nodeid.partition("::")
    classname = file.removesuffix(".py").replace("/", ".")
    state = case["state"] if case else test["state"]
    message = (case["message"] if case else None) or test["message"] or state
    element = ET.SubElement(parent, "testcase", classname=classname, name=name,
                            time=f"{case['duration_s'] if case else 0:.3f}")
    if state == PASSED and test["state"] == GATED:
        state, message = GATED, test["message"]
    tag = "failure" if state in _JUNIT_FAILURE else "error" if state in _JUNIT_ERROR else \
        "skipped" if state in _JUNIT_SKIPPED else None
    if tag:
        ET.SubElement(element, tag, message=f"{state}: {message}"[:1000]).text = f"{state}: {message}"
    if case is not None and isinstance(case["speed"], dict):     # this case's figure; the test's tier (no points)
        said = [speed_line(case["speed"])] + ([f"the test's {test['tier_line']}"] if test.get("tier_line") else [])
        ET.SubElement(element, "system-out").text = "\n".join(said)
    return tag or "passed"


def junit(doc: dict) -> str:
    """JUnit XML: a <testsuite> per topic, a <testcase> per test case (or per test that never ran)."""
    root = ET.Element("testsuites", name="lab grading")
    for topic in doc["topics"]:
        suite = ET.SubElement(root, "testsuite", name=topic["topic"], time=f"{topic['duration_s']:.3f}")
        props = ET.SubElement(suite, "properties")
        for key, value in (("status", topic["status"]), ("message", topic["message"]),
                           ("points", report.points_cell(topic["points"], doc["hardware"])),
                           ("seed", topic["seed"])):
            ET.SubElement(props, "property", name=key, value=str(value))
        counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
        for error in topic["errors"]:
            case = ET.SubElement(suite, "testcase", classname=f"exercises.{topic['topic']}", name="collection")
            ET.SubElement(case, "error", message=error[:1000]).text = error
            counts["error"] += 1
        for test in topic["tests"]:
            for case in test["cases"] or [None]:
                counts[_junit_case(suite, topic["topic"], test, case)] += 1
        suite.set("tests", str(sum(counts.values())))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
