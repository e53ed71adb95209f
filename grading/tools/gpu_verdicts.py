"""The verdicts of `python -m grading gpu_check` (grading/tools/gpu_check.py runs the processes; this judges
what they measured): how many measurements an implementation needs, the 20% margin, the flips, the naive
versions' misses, a workable threshold where a default fails; pooling several calls' reports (`--merge`) and
the closing table.

A threshold holds on a card when the reference clears it by 20% in each of the rule's ten measurements, every
naive measurement misses it, and no verdict flips. A naive version whose every reading stays under 80% of the
threshold needs three measurements (one in each process), one that comes nearer the reference's ten.
"""
from __future__ import annotations

import math
import statistics

from grading.tools.calibrate import MARGIN
from grading.tools.calibrate import flips as _verdict_flips

RULE_MEASUREMENTS = 10      # the flip check's measurements per implementation (docs/thresholds.md)
NAIVE_MEASUREMENTS = 3      # a naive version far below its threshold: one measurement in each of the 3 processes
NAIVE_NEAR = 0.8            # ... "far below": every reading under 80% of the threshold; nearer, the rule's ten


def near_threshold(ratios: list[float], threshold: float) -> bool:
    """Whether a naive version's readings come within 20% under the threshold (or it is not positive): such a
    version is measured the rule's ten times, like the reference, to show that it never flips to a pass."""
    return threshold <= 0 or any(r >= NAIVE_NEAR * threshold for r in ratios)


def flips(ratios: list[float], threshold: float) -> int:
    """Measurements whose verdict (ratio >= threshold) differs from the majority's."""
    return _verdict_flips([r >= threshold for r in ratios])


def judge(entry: dict) -> dict:
    """Margins, flips, measurement counts and the verdict of one threshold; where it breaks, by how much; a
    workable threshold. `misses` is true where the threshold itself fails here (the reference's margin or a
    naive pass): only then may `--write` propose another."""
    t, sol = entry["threshold"], entry["solution"]
    naive = [r for ratios in entry["naive"].values() for r in ratios]
    problems = []
    if not sol:
        problems.append("the reference made no measurement (did its speed test run?)")
    elif min(sol) < MARGIN * t:
        problems.append(f"the reference's worst ratio {min(sol):.2f} is {1 - min(sol) / (MARGIN * t):.0%} short of "
                        f"the 20% margin over {t:g} (needs >= {MARGIN * t:.2f})")
    if naive and max(naive) >= t:
        problems.append(f"a naive version reached {max(naive):.2f} >= {t:g}")
    misses = bool(problems) and bool(sol)
    counts = {"the reference": len(sol), **{name: len(r) for name, r in entry["naive"].items()}}
    enough = {"the reference": RULE_MEASUREMENTS, **{     # a naive version far below its threshold: three suffice
        name: RULE_MEASUREMENTS if near_threshold(r, t) else NAIVE_MEASUREMENTS for name, r in entry["naive"].items()}}
    short = [f"{who} {n}" for who, n in counts.items() if 0 < n < enough[who]]
    if short:
        problems.append(f"too few measurements to calibrate ({', '.join(short)}; the rule asks "
                        f"{RULE_MEASUREMENTS} each, {NAIVE_MEASUREMENTS} of a naive version whose every reading is "
                        f"under {NAIVE_NEAR:.0%} of the threshold: pool more with --merge)")
    total_flips = flips(sol, t) + sum(flips(r, t) for r in entry["naive"].values())
    if total_flips:
        problems.append(f"{total_flips} verdict(s) flipped")
    workable = math.floor(min(sol) / MARGIN * 100) / 100 if sol else None
    if workable is not None and naive and max(naive) >= workable:
        workable = None                     # no threshold separates the two on this card
    return {"ok": not problems, "problems": problems, "flips": total_flips, "misses": misses,
            "solution_min": min(sol) if sol else None, "naive_max": max(naive) if naive else None,
            "workable_threshold": workable, "reference_median": statistics.median(sol) if sol else None}


def judged(table: dict[str, dict]) -> dict[str, dict]:
    """A topic's table of measurements (calibrate_topic's) with each threshold's judge() verdict added."""
    return {key: {**row, **judge(row)} for key, row in table.items()}


def reference_figures(report: dict) -> dict[str, float]:
    """{test key: the reference's median ratio} for every paired speed-up the reference measured on the GPU the
    rule's ten times or more (a measured figure of lab.figures is not a speed-up and gets no tiers, so no
    reference figure)."""
    return {key: row["reference_median"] for t in report["topics"].values()
            for key, row in t.get("thresholds", {}).items()
            if row.get("paired") and row.get("reference_median") and row["reference_median"] > 0
            and len(row["solution"]) >= RULE_MEASUREMENTS}


THRESHOLD_FIELDS = ("what", "threshold", "paired", "solution", "naive")     # measured; judge() adds the rest


def merge_reports(report: dict, previous: list[dict]) -> dict:
    """Pool earlier gpu_check reports' measurements into `report` (same card and torch), topic by topic and
    threshold by threshold, and judge each threshold again on the pooled figures. Returns `report`."""
    for old in previous:
        if (old.get("card"), old.get("torch")) != (report["card"], report["torch"]):
            raise ValueError(f"cannot merge a report of {old.get('card')} / torch {old.get('torch')} into one of "
                             f"{report['card']} / torch {report['torch']}: calibrate each card on its own")
        for topic, entry in old.get("topics", {}).items():
            into = report["topics"].setdefault(topic, {})
            if "correctness" in entry and "correctness" not in into:
                into["correctness"] = entry["correctness"]
            for key, row in entry.get("thresholds", {}).items():
                pooled = into.setdefault("thresholds", {}).setdefault(
                    key, {"what": row["what"], "threshold": row["threshold"], "paired": row.get("paired", False),
                          "solution": [], "naive": {}})
                if row["threshold"] != pooled["threshold"]:
                    raise ValueError(f"{key}: threshold {row['threshold']:g} in one report, {pooled['threshold']:g} "
                                     "in another: measure again with one")
                pooled["solution"] += row["solution"]
                for name, ratios in row["naive"].items():
                    pooled["naive"].setdefault(name, []).extend(ratios)
    for entry in report["topics"].values():
        if "thresholds" in entry:
            entry["thresholds"] = judged({key: {k: row[k] for k in THRESHOLD_FIELDS}
                                          for key, row in entry["thresholds"].items()})
    report["merged"] = len(previous)
    report["seconds_pooled"] = report.get("seconds", 0) + sum(
        old.get("seconds_pooled", old.get("seconds", 0)) for old in previous)
    return report


def print_table(report: dict) -> bool:
    """The closing table; True when every check held."""
    ok = True
    merged = f", pooled with {report['merged']} earlier report(s)" if report.get("merged") else ""
    repeat = report.get("repeat")
    each = "+".join(map(str, repeat)) if isinstance(repeat, list) else f"{report['runs']} x {repeat}"
    naive_repeat = report.get("naive_repeat")
    far = f" ({'+'.join(map(str, naive_repeat))} of a naive version far below its threshold)" \
        if isinstance(naive_repeat, list) and naive_repeat != repeat else ""
    print(f"\n{report['card']}: {report['runs']} process(es), {each} measurements per implementation{far} "
          f"in this call{merged}\n")
    print("| topic | test | threshold | reference (min-max, median; n) | naive (max; n) | flips | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for topic, entry in report["topics"].items():
        c = entry.get("correctness")
        if c is not None:
            ok &= not c["failed"]
            verdict = "ok" if not c["failed"] else "; ".join(c["failed"][:3])
            print(f"| {topic} | GPU correctness ({c['passed']} passed, {c['skipped']} skipped) | | | | | {verdict} |")
        for key, row in entry.get("thresholds", {}).items():
            ok &= row["ok"]
            sol = f"{min(row['solution']):.2f}-{max(row['solution']):.2f}, {row['reference_median']:.2f}; " \
                f"{len(row['solution'])}" if row["solution"] else "none"
            naive = f"{row['naive_max']:.2f}; {sum(len(r) for r in row['naive'].values())}" \
                if row["naive_max"] is not None else "none"
            verdict = "ok" if row["ok"] else "; ".join(row["problems"]) + (
                f" (a workable threshold here: {row['workable_threshold']:g})"
                if row.get("misses") and row["workable_threshold"] else "")
            print(f"| {topic} | {key.split('::', 1)[1]} | {row['threshold']:g} | {sol} | {naive} | {row['flips']} | "
                  f"{verdict} |")
    return ok
