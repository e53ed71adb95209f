"""The local grading history: one line per run in `<out>/history.jsonl`, and progress since the last run.

    progress = history.progress(out, doc)   # {"since": ..., "topics": {"inf00": 3.0, "inf10": None}}
    history.append(out, doc)

A run is compared with the latest earlier run of the same implementation and root on the same kind of
hardware (CPU or CUDA), topic by topic: the change in points earned, None for a topic that run did not
grade. A history line that cannot be read is skipped; the history never stops a grading run.
"""
from __future__ import annotations

import json
from pathlib import Path

FILE_NAME = "history.jsonl"


def entry(doc: dict) -> dict:
    """What the history keeps of one scorecard."""
    return {"started_at": doc["started_at"], "impl": doc["impl"], "root": doc["root"], "seed": doc["seed"],
            "cuda": bool(doc["hardware"].get("cuda")), "points": doc["totals"]["points"],
            "submission": (doc.get("submission") or {}).get("source"),
            "topics": {t["topic"]: {"status": t["status"], **t["points"]} for t in doc["topics"]}}


def read(out: Path) -> list[dict]:
    path = Path(out) / FILE_NAME
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def progress(out: Path, doc: dict) -> dict | None:
    """Points earned per topic since the latest comparable run, or None when there is none."""
    mine = entry(doc)
    same = [run for run in read(out) if isinstance(run, dict) and all(
        run.get(key) == mine[key] for key in ("impl", "root", "cuda", "submission"))]
    if not same:
        return None
    last = same[-1].get("topics") or {}
    deltas = {}
    for topic, now in mine["topics"].items():
        before = last.get(topic)
        earned = before.get("earned") if isinstance(before, dict) else None
        deltas[topic] = round(now["earned"] - earned, 4) if isinstance(earned, (int, float)) else None
    return {"since": same[-1].get("started_at"), "topics": deltas}


def append(out: Path, doc: dict) -> None:
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / FILE_NAME, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry(doc)) + "\n")
    except OSError:
        pass


def change_cell(delta: float | None) -> str:
    """'+3', '-1.5', '=' or 'new' for the scorecard's progress column."""
    if delta is None:
        return "new"
    if abs(delta) < 1e-9:
        return "="
    return f"{delta:+g}"
