"""The student release is a student's: no topic's answer outside the stubs (grading/tools/leaks.py: every
file it ships is searched for the distinctive lines of every `# BEGIN SOLUTION` region), its README,
Makefile and notebooks speak to students, and asking it for the reference says plainly that it is not there."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from grading.tools import leaks, release
from lab.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not (REPO_ROOT / "solutions").is_dir(), reason="needs solutions/ (instructors)")
INSTRUCTORS_ONLY = re.compile(r"IMPL=solutions|--impl[ =]solutions|make (stubs|release|topic|gpu-check|check)\b|"
                              r"planted|\(instructors\)|reference solutions pass")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student") / "release"
    release.build(dest)
    return dest


def test_the_release_holds_no_solution_outside_the_stubs(built):
    found = leaks.search_release(built)
    assert not found, ("the student release holds answers (move them out, or take the student's own part "
                       "through lab.impl.Topic):\n\n" + "\n\n".join(map(str, found)))


def test_the_search_finds_a_planted_answer(tmp_path):
    """The search's power: a copy of one region's code in a support file is found, named and shown."""
    region = next(r for r in leaks.regions() if r.solution == "solutions/inf10/kv_cache.py" and len(r.lines) >= 3)
    planted = tmp_path / "lab" / "helper.py"
    planted.parent.mkdir()
    planted.write_text("def helper(self, k, v, layer_idx):\n" +
                       "".join(f"    {line.strip()}   # renamed comment\n" for line in region.lines.values()))
    found = leaks.search({"lab/helper.py": planted}, [region])
    assert len(found) == 1 and found[0].file == "lab/helper.py", f"expected the planted copy to be found, got {found}"
    assert "solutions/inf10/kv_cache.py" in str(found[0])


def test_a_lessons_own_hint_block_may_show_the_shape_of_its_code(tmp_path):
    region = next(r for r in leaks.regions() if r.solution.startswith("solutions/inf30/") and len(r.lines) >= 3)
    code = "\n".join(line.strip() for line in region.lines.values())
    lesson = tmp_path / "README.md"
    lesson.write_text(f"# inf30\n<details><summary>Hint 3</summary>\n\n```python\n{code}\n```\n</details>\n")
    assert not leaks.search({"exercises/inf30/README.md": lesson}, [region]), "a topic's own hint is allowed"
    assert leaks.search({"exercises/inf31/README.md": lesson}, [region]), "another topic's lesson may not hold it"
    lesson.write_text(f"# inf30\n```python\n{code}\n```\n")
    assert leaks.search({"exercises/inf30/README.md": lesson}, [region]), "outside a hint block it is a leak"


def test_the_releases_readme_makefile_and_notebooks_speak_to_students(built):
    texts = {"README.md": (built / "README.md").read_text(), "Makefile": (built / "Makefile").read_text()}
    for notebook in sorted(built.glob("exercises/*/*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        texts[notebook.relative_to(built).as_posix()] = "\n".join("".join(c["source"]) for c in cells)
    said = [f"{name}: {line.strip()}" for name, text in texts.items() for line in text.splitlines()
            if INSTRUCTORS_ONLY.search(line)]
    assert not said, "the release still speaks to instructors:\n" + "\n".join(said)
    assert "make grade" in texts["README.md"] and "\ngrade: setup" in texts["Makefile"]
    assert "stubs:" not in texts["Makefile"] and "release:" not in texts["Makefile"]


def test_asking_a_release_for_the_reference_says_it_is_not_included(built):
    env = {**os.environ, "PYTHONPATH": str(built), "PYTHONDONTWRITEBYTECODE": "1",
           "LAB_CACHE_DIR": os.environ.get("LAB_CACHE_DIR") or str(REPO_ROOT / ".lab-cache")}
    env.pop("LAB_IMPL", None)
    (built / "grading-out").mkdir()
    card = built / "grading-out" / "scorecard.json"
    card.write_text("{}")                                         # a student's last scorecard
    grader = subprocess.run([sys.executable, "-m", "grading", "--impl", "solutions", "--topics", "inf00",
                             "--json", str(card)], cwd=built, env=env, capture_output=True, text=True, timeout=300)
    assert grader.returncode == 2 and "not included in this release" in grader.stderr, grader.stdout + grader.stderr
    assert card.read_text() == "{}", "the grader overwrote the scorecard"
    tests = subprocess.run([sys.executable, "-m", "pytest", "exercises/inf00", "--impl", "solutions", "-q", "-p",
                            "no:cacheprovider"], cwd=built, env=env, capture_output=True, text=True, timeout=300)
    out = tests.stdout + tests.stderr
    assert tests.returncode != 0 and out.count("not included in this release") == 1, out[-3000:]
    assert "ModuleNotFoundError" not in out and "passed" not in out, out[-3000:]
