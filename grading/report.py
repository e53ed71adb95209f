"""Scorecards for people: the terminal table and Markdown, both rendered from the scorecard document.

Invariants: nothing here computes points (they come from `grading.scorecard.build`); colors are used
only when asked for (the caller passes `color=True` only for a TTY without NO_COLOR); every line of the
terminal table fits `width` columns, the message column being the one truncated; terminal text is
ASCII, so any console encoding can print it.
"""
from __future__ import annotations

from grading.history import change_cell
from grading.score import COMPLETE, CRASHED, ERROR, NOT_STARTED, PARTIAL, PASSED, TIMED_OUT, VOID

_COLORS = {COMPLETE: "32", PARTIAL: "33", NOT_STARTED: "2", ERROR: "31", CRASHED: "31", TIMED_OUT: "31", VOID: "31"}
HEADERS = ("topic", "correctness", "speed", "status", "first failure")


def fmt(x: float) -> str:
    """Points as short text: 2, 2.5, 0.67."""
    return f"{round(x, 2):g}"


def points_cell(t: dict, hardware: dict) -> str:
    """'earned/possible here', '-' when nothing is possible, 'n/a on CPU' when nothing is possible here."""
    if t["possible"] == 0:
        return "-"
    if t["possible_here"] == 0:
        return "n/a on CPU" if not hardware.get("cuda") else "n/a here"
    text = f"{fmt(t['earned'])}/{fmt(t['possible_here'])}"
    hidden = t["possible"] - t["possible_here"]
    return text + (f" +{fmt(hidden)} n/a" if hidden > 1e-9 else "")


def hardware_line(hw: dict) -> str:
    device = hw.get("device_name") if hw.get("cuda") else f"CPU ({hw.get('machine') or 'unknown'})"
    torch = f"torch {hw['torch']}" if hw.get("torch") else "torch not installed"
    return f"{device}, {torch}, Python {hw.get('python', '?')}"


def seed_line(doc: dict) -> str | None:
    if doc["seed"] is not None:
        return f"lab seed: {doc['seed']} (replay with --seed {doc['seed']})"
    seeds = [f"{topic} {seed}" for topic, seed in doc["seeds"].items() if seed is not None]
    return "lab seeds: " + ", ".join(seeds) if seeds else None


def total_line(doc: dict) -> str:
    totals, hw = doc["totals"], doc["hardware"]
    p = totals["points"]
    full = "" if abs(p["possible"] - p["possible_here"]) < 1e-9 else f" ({fmt(p['possible'])} in full)"
    return (f"total: {fmt(p['earned'])} / {fmt(p['possible_here'])} points on this hardware{full}; "
            f"correctness {points_cell(totals['correctness'], hw)}, speed {points_cell(totals['speed'], hw)}")


def headers(doc: dict) -> tuple[str, ...]:
    """The summary table's columns; "since last" (points gained per topic) when there is a previous run."""
    return HEADERS[:4] + ("since last",) + HEADERS[4:] if doc.get("progress") else HEADERS


def topic_rows(doc: dict) -> list[tuple[str, ...]]:
    hw, progress = doc["hardware"], (doc.get("progress") or {}).get("topics")
    rows = []
    for t in doc["topics"]:
        change = (change_cell(progress.get(t["topic"])),) if progress is not None else ()
        rows.append((t["topic"], points_cell(t["correctness"], hw), points_cell(t["speed"], hw), t["status"],
                     *change, t["message"] or ""))
    return rows


def submission_lines(doc: dict) -> list[str]:
    """Files a `--submission` run graded (with the start of their sha256) and those it ignored."""
    sub = doc.get("submission")
    if not sub:
        return []
    lines = [f"submission {sub['source']}: {len(sub['files'])} file(s) graded, {len(sub['ignored'])} ignored "
             "(sha256 in the JSON scorecard)"]
    lines += [f"  {f['topic']}/{f['module']}  sha256 {f['sha256'][:12]}" for f in sub["files"]]
    lines += [f"  ignored {i['path']}: {i['reason']}" for i in sub["ignored"][:10]]
    more = len(sub["ignored"]) - 10
    return lines + ([f"  ... {more} more ignored"] if more > 0 else [])


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int, color_col: int | None,
           color: bool) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    room = max(20, width - sum(widths) - 2 * (len(widths)))
    lines = []
    for index, row in enumerate([headers, *rows]):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        if color and index and color_col is not None and row[color_col] in _COLORS:
            code = _COLORS[row[color_col]]
            cells[color_col] = f"\033[{code}m{cells[color_col]}\033[0m"
        lines.append(("  ".join(cells) + "  " + _shorten(row[-1], room)).rstrip())
    return lines


def _details(doc: dict, width: int) -> list[str]:
    """Two lines per test that did not earn its points: what it is worth and its state, then why."""
    lines = []
    for topic in doc["topics"]:
        if topic["status"] == NOT_STARTED:      # one line, not a screenful of identical ones
            unstarted = [t for t in topic["tests"] if t["state"] == NOT_STARTED]
            lines.append(f"  {topic['topic']}  not started: {len(unstarted)} tests wait for your code; "
                         f"begin with exercises/{topic['topic']}/README.md")
            continue
        for test in topic["tests"]:
            if test["state"] == PASSED:
                continue
            p = test["points"]
            points = f"-/{fmt(p['possible'])}" if p["possible_here"] == 0 and p["possible"] else \
                f"{fmt(p['earned'])}/{fmt(p['possible_here'])}"
            lines.append(f"  {topic['topic']}  {test['name']}  {points}  {test['state']}")
            if test["message"] and test["message"] != test["state"]:
                lines.append("      " + _shorten(test["message"], width - 6))
    return lines


SPEED_HEADING = "speed tests (ratio against its threshold; tiers are a bonus and carry no points):"


def speed_lines(doc: dict, width: int) -> list[str]:
    """Per speed test that recorded a figure: topic, test and tier, then the figure, then the tier's line."""
    lines = []
    for topic in doc["topics"]:
        for test in topic["tests"]:
            if test.get("speed_line") is None:
                continue
            lines.append(f"  {topic['topic']}  {test['name']}  tier {test.get('tier') or '-'}")
            said = (test["speed_line"], test.get("tier_line"))
            lines += ["      " + _shorten(text, width - 6) for text in said if text]
    return lines


def terminal(doc: dict, width: int = 100, color: bool = False) -> str:
    """The scorecard for a terminal: summary table, total, then the tests that fell short."""
    lines = [f"Scorecard: impl {doc['impl']}; {hardware_line(doc['hardware'])}", ""]
    lines += [line if len(line) <= width else line[: width - 3] + "..." for line in submission_lines(doc)]
    lines += [""] if doc.get("submission") else []
    lines += _table(headers(doc), topic_rows(doc), width, 3, color)
    lines += ["", total_line(doc)]
    details = _details(doc, width)
    if details:
        lines += ["", "tests that did not earn their points (topic, test, points, state; then why):"]
        lines += details
    speed = speed_lines(doc, width)
    if speed:
        lines += ["", SPEED_HEADING] + speed
    lines += [""] + [f"warning: {w}" for w in doc["warnings"]]
    if doc.get("progress"):
        lines.append(f"since last: points gained per topic since that topic's last graded run (the latest: "
                     f"{doc['progress']['since']})")
    seed = seed_line(doc)
    lines += [seed] if seed else []
    return "\n".join(lines).strip() + "\n"


def _md(text) -> str:
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def markdown(doc: dict) -> str:
    """The same scorecard as GitHub-flavoured Markdown: summary, total, a table per topic."""
    seed = seed_line(doc)
    out = ["# Scorecard", "",
           f"impl `{doc['impl']}` · {hardware_line(doc['hardware'])} · {doc['started_at']}"
           + (f" · {seed}" if seed else ""), "",
           "| " + " | ".join(headers(doc)) + " |", "|" + "---|" * len(headers(doc))]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in topic_rows(doc)]
    out += ["", f"**{total_line(doc)}**"]
    for topic in doc["topics"]:
        out += ["", f"## {topic['topic']}: {topic['status']}", "",
                "| test | category | points | state | tier (no points) | message |", "|---|---|---|---|---|---|"]
        for test in topic["tests"]:
            p = test["points"]
            said = [text for text in (test["message"], test.get("speed_line"), test.get("tier_line")) if text]
            out.append(f"| {_md(test['name'])} | {test['category']} | {fmt(p['earned'])}/"
                       f"{fmt(p['possible_here'])} (of {fmt(p['possible'])}) | {test['state']} | "
                       f"{_md(test.get('tier') or '')} | {_md('; '.join(dict.fromkeys(said)))} |")
    if doc["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in doc["warnings"]]
    return "\n".join(out) + "\n"
