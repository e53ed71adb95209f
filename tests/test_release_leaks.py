"""No topic's answer in the student release outside the stubs (grading/tools/leaks.py): a release is built
and every file it ships is searched for the distinctive lines of every `# BEGIN SOLUTION` region."""
from __future__ import annotations

import pytest

from grading.tools import leaks, release
from lab.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not (REPO_ROOT / "solutions").is_dir(), reason="needs solutions/ (instructors)")


def test_the_release_holds_no_solution_outside_the_stubs(tmp_path):
    dest = tmp_path / "release"
    release.build(dest)
    found = leaks.search_release(dest)
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
