"""The local grading history: one line per run in `<out>/history.jsonl`, and each topic's progress since its last grade.

    progress = history.progress(out, doc)   # {"since": ..., "topics": {"inf00": 3.0, "inf10": None}}
    history.append(out, doc)

Each topic is compared with its own last graded result: the latest earlier run of the same implementation,
root (and submission) on the same kind of hardware (CPU or CUDA) that graded that topic, so that
`make grade TOPICS=inf00` between two runs of inf10 does not make inf10 "new". The change in points earned,
None for a topic no such run graded (or graded only with void results). A history line that cannot be read is
skipped; the history never stops a grading run.
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


def _earned(run: dict, topic: str) -> float | None:
    """The points `run` earned in `topic`, or None when it did not grade it (or its results were void)."""
    result = (run.get("topics") or {}).get(topic)
    if not isinstance(result, dict) or result.get("status") == "void":
        return None
    earned = result.get("earned")
    return earned if isinstance(earned, (int, float)) and not isinstance(earned, bool) else None


def progress(out: Path, doc: dict) -> dict | None:
    """Points earned per topic since that topic's last graded comparable run, or None when there is no such run.

    {"since": the latest comparable run's start, "topics": {topic: delta or None}, "runs": {topic: the start of
    the run it was compared with, or None}}.
    """
    mine = entry(doc)
    same = [run for run in read(out) if isinstance(run, dict) and all(
        run.get(key) == mine[key] for key in ("impl", "root", "cuda", "submission"))]
    if not same:
        return None
    deltas, runs = {}, {}
    for topic, now in mine["topics"].items():
        last = next((run for run in reversed(same) if _earned(run, topic) is not None), None)
        deltas[topic] = None if last is None else round(now["earned"] - _earned(last, topic), 4)
        runs[topic] = None if last is None else last.get("started_at")
    return {"since": same[-1].get("started_at"), "topics": deltas, "runs": runs}


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
