"""GitHub Classroom's autograding configuration, generated from the topics' points (topic.toml) and the collected tests.

    python -m grading classroom --write      # .github/classroom/autograding.json, every topic
    python -m grading classroom --check      # exit 1 if the committed file differs from the generated one

Classroom runs each entry on a CPU runner in the student's repository (the release; the workflow
`grading/classroom.yml` is copied there as .github/workflows/classroom.yml) and gives an entry's points
when its command exits 0. One entry per test gradable on a CPU (GPU tests are left out: Classroom's
runners have none): `pytest` on the test's node ids, and for a speed test also on the tests it requires,
so its points come only when they pass (as in the grader; a parametrized test is all or nothing here).
Hidden tests are never in it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grading import rubric, runner
from lab.paths import REPO_ROOT

CONFIG = Path(".github") / "classroom" / "autograding.json"
PYTEST = ".venv/bin/python -m pytest -q -p no:cacheprovider -m 'not gpu'"
TIMEOUT_MIN = 10


def _tests_of(run: runner.TopicRun) -> dict[str, dict]:
    """{base name: {"file", "markers"}} in collection order."""
    tests: dict[str, dict] = {}
    for item in run.items:
        test = tests.setdefault(item["name"], {"file": item["file"], "markers": set()})
        test["markers"] |= set(item.get("markers", []))
    return tests


def entries(root: Path, topics: list[str], table: rubric.Table) -> list[dict]:
    """The autograding.json test entries of `topics` (collected with the stubs, in their own processes)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="lab-classroom-") as tmp:
        def collect(topic: str) -> runner.TopicRun:     # hidden tests are never in it: not collected
            return runner.run_topic(root, topic, "exercises", runner.Limits(600, 600), Path(tmp), collect_only=True,
                                    hidden=False)
        # A collection times nothing: two topics at a time keep a 2-core machine (CI's) busy.
        with ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:
            runs = list(pool.map(collect, topics))
        for topic, run in zip(topics, runs):
            tests, section = _tests_of(run), table.get(topic, {})
            for name, test in tests.items():
                entry = section.get(name)
                if entry is None or "gpu" in test["markers"] or test["file"].startswith("grading/hidden/"):
                    continue
                needed = [name]
                if "speed" in test["markers"]:
                    needed += list(entry.requires) if entry.requires is not None else [
                        n for n, t in tests.items() if t["file"] == test["file"] and "speed" not in t["markers"]]
                ids = " ".join(f"'{tests[n]['file']}::{n.replace('.', '::')}'" for n in needed
                               if n in tests and "gpu" not in tests[n]["markers"])
                out.append({"name": f"{topic} {name}", "setup": "", "run": f"{PYTEST} {ids}", "input": "",
                            "output": "", "comparison": "included", "timeout": TIMEOUT_MIN,
                            "points": int(entry.points) if entry.points == int(entry.points) else entry.points})
    return out


def render(tests: list[dict]) -> str:
    return json.dumps({"tests": tests}, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading classroom", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    parser.add_argument("--root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    table = rubric.load_points(root=args.root, include_hidden=False)
    text = render(entries(args.root, runner.discover_topics(args.root), table))
    path = args.root / CONFIG
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if not path.is_file() or path.read_text() != text:
        print(f"stale: {path} (run: python -m grading classroom --write)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
