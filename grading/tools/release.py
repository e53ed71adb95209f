"""The student release: the lab without what only instructors may see.

    python -m grading release DIR                 # the student repository (e.g. a GitHub Classroom template)
    python -m grading release DIR --autograder    # Gradescope's autograder source: + hidden tests, setup.sh,
                                                  # run_autograder at the top (add --zip for autograder.zip)
    python -m grading release DIR --smoke         # then its smoke test: every topic "not started"

The release also gets GitHub Classroom's workflow (grading/classroom.yml -> .github/workflows/classroom.yml);
its tests are .github/classroom/autograding.json (`python -m grading classroom --write`).

What a release leaves out: solutions/, the planted versions and their test (tests/planted,
tests/test_planted.py), the correct variants the seed sweep runs (tests/variants), the hidden tests
(grading/hidden, unless --autograder), the Gradescope scripts, notebook sources and instructors' docs
(exercises/infNN/notebook.py, docs/adding-a-topic.md) and the GPU measurement scripts (docs/perf, which
import the reference solutions, and tests/test_gemv.py and tests/test_decode_attention.py, the tests of its
kernels).
The stubs in exercises/ are generated afresh from the marked solutions (the stub generator), so edits
in the instructor's exercises/ never leak. In Markdown files, lines of code blocks that run the reference
(`--impl solutions`, `IMPL=solutions`) or are marked `(instructors)`, and `<!-- instructors -->` ...
`<!-- /instructors -->` blocks, are dropped. In the Makefile, comment lines marked `(instructors)` and the
targets whose `##` help says `(instructors)` are dropped. The release's own tests (`make test`) skip the checks that
need solutions/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grading import tree
from grading.tools import stubs
from lab.paths import REPO_ROOT

ROOT = REPO_ROOT
LEAVES_OUT = ("solutions", "tests/planted", "tests/variants", "tests/test_planted.py", "tests/test_gemv.py",
              "tests/test_decode_attention.py", "grading/hidden", "grading/autograder", "docs/adding-a-topic.md",
              "docs/perf", "exercises/*/notebook.py")
AUTOGRADER_KEEPS = ("grading/hidden", "grading/autograder")
_REFERENCE_LINE = re.compile(r"--impl[ =]solutions|IMPL=solutions|\(instructors\)")
_BLOCK = re.compile(r"<!-- instructors -->.*?<!-- /instructors -->\n?", re.S)


class ReleaseError(ValueError):
    pass


def student_markdown(text: str) -> str:
    """A Markdown file as students get it (see the module docstring)."""
    out, fenced = [], False
    for line in _BLOCK.sub("", text).splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not (fenced and _REFERENCE_LINE.search(line)):
            out.append(line)
    return "".join(out)


_RULE = re.compile(r"^([A-Za-z][\w-]*):")


def student_makefile(text: str) -> str:
    """The Makefile as students get it (see the module docstring)."""
    out, dropped, skipping = [], [], False
    for line in text.splitlines(keepends=True):
        rule = _RULE.match(line)
        if rule and not line.startswith(".PHONY"):
            skipping = "##" in line and "(instructors)" in line.split("##", 1)[1]
            if skipping:
                dropped.append(rule.group(1))
        elif skipping and not line.startswith("\t"):
            skipping = False
            if not line.strip():
                continue                           # the blank line after a dropped rule
        if skipping or line.lstrip().startswith("#") and "(instructors)" in line:
            continue
        out.append(line)
    return "".join(re.sub(r"^(\.PHONY:.*)$", lambda m: " ".join(w for w in m.group(1).split() if w not in dropped),
                          line) if line.startswith(".PHONY") else line for line in out)


def build(dest: Path, root: Path = ROOT, autograder: bool = False, grader_args: str = "") -> list[str]:
    """Write the release into `dest` (absent or empty); returns the files written, relative to it.
    `grader_args` (with `autograder`): extra `python -m grading` arguments for run_autograder."""
    dest, root = Path(dest).resolve(), Path(root).resolve()
    if not tree.is_empty_or_absent(dest):
        raise ReleaseError(f"{dest} exists and is not empty; give a new folder")
    if dest.is_relative_to(root) and not dest.is_relative_to(root / "grading-out"):
        raise ReleaseError(f"{dest} is inside the lab; give a folder outside it (or under grading-out/)")
    leaves_out = tuple(p for p in LEAVES_OUT if not (autograder and p in AUTOGRADER_KEEPS))
    files = tree.lab_files(root, leaves_out)
    tree.copy_files(root, dest, files)
    for target, text in stubs.expected_stubs(root).items():          # fresh stubs from the marked solutions
        stub = target.relative_to(root)
        (dest / stub).parent.mkdir(parents=True, exist_ok=True)
        (dest / stub).write_text(text)
        files.append(stub.as_posix())
    for rel in files:
        if rel.endswith(".md"):
            path = dest / rel
            path.write_text(student_markdown(path.read_text(encoding="utf-8")), encoding="utf-8")
        elif rel == "Makefile":
            path = dest / rel
            path.write_text(student_makefile(path.read_text(encoding="utf-8")), encoding="utf-8")
    workflow = dest / ".github" / "workflows" / "classroom.yml"        # GitHub Classroom runs it
    workflow.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "grading" / "classroom.yml", workflow)
    files.append(workflow.relative_to(dest).as_posix())
    if autograder:
        for script in ("setup.sh", "run_autograder"):
            shutil.copy2(root / "grading" / "autograder" / script, dest / script)
            files.append(script)
        if grader_args:
            (dest / "autograder_args").write_text(grader_args + "\n")
            files.append("autograder_args")
    return sorted(set(files))


def smoke(release: Path, topics: tuple[str, ...] | None = None, timeout_s: float = 3600) -> dict:
    """Grade the release's own stubs (`topics`, default all) with its own grader, as its README says
    (`python -m grading`); returns the JSON scorecard. Raises ReleaseError unless every topic is
    "not started" (and nothing of the instructor's is in it)."""
    release = Path(release).resolve()
    leaked = [p for p in ("solutions", "tests/planted", "tests/variants", "grading/hidden") if (release / p).exists()]
    if leaked and not (release / "run_autograder").exists():
        raise ReleaseError(f"the release holds instructors' material: {leaked}")
    env = {**os.environ, "PYTHONPATH": str(release), "LAB_CACHE_DIR": os.environ.get("LAB_CACHE_DIR")
           or str(ROOT / ".lab-cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    # The scorecard goes to a temporary folder and pytest's droppings are removed: the release stays as built.
    with tempfile.TemporaryDirectory(prefix="lab-release-smoke-") as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "-m", "grading", "--json", str(out / "card.json"), "--out", str(out), "--no-history"]
        cmd += ["--topics", ",".join(topics)] if topics else []
        try:
            done = subprocess.run(cmd, cwd=release, env=env, capture_output=True, text=True, timeout=timeout_s)
        finally:
            for junk in (".benchmarks", ".pytest_cache", "grading-out"):
                shutil.rmtree(release / junk, ignore_errors=True)
            for cache in release.rglob("__pycache__"):
                shutil.rmtree(cache, ignore_errors=True)
        if done.returncode != 0:
            raise ReleaseError(f"the release's grader failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        card = json.loads((out / "card.json").read_text())
    wrong = [f"{t['topic']}: {t['status']} ({t['message']})" for t in card["topics"] if t["status"] != "not started"]
    if wrong:
        raise ReleaseError("in the release every topic must be 'not started':\n" + "\n".join(wrong))
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading release", description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="a new (or empty) folder outside the lab")
    parser.add_argument("--autograder", action="store_true", help="Gradescope's autograder source (see above)")
    parser.add_argument("--grader-args", default="", metavar="ARGS",
                        help="with --autograder: extra grader arguments ('--topics inf10' for a one-topic assignment)")
    parser.add_argument("--zip", action="store_true", help="also write DEST.zip (Gradescope takes the zip)")
    parser.add_argument("--smoke", action="store_true", help="grade the release's stubs afterwards (every topic "
                        "must be 'not started'; minutes: the real model is loaded)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the lab to release (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        files = build(args.dest, args.root, args.autograder, args.grader_args)
        if args.zip:
            print(f"wrote {shutil.make_archive(str(args.dest), 'zip', args.dest)}")
        if args.smoke:
            smoke(args.dest)
            print("smoke test: the release's grader runs and every topic is 'not started'")
    except (ReleaseError, OSError, subprocess.SubprocessError) as exc:
        print(f"python -m grading release: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} files to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
