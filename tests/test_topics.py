"""The lab's promises about its topics: stubs generated from solutions, same API, notebooks built."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grading.tools import notebooks, stubs
from lab.paths import REPO_ROOT

ROOT = REPO_ROOT
SOLUTION_MODULES = sorted(p.relative_to(ROOT / "solutions") for p in (ROOT / "solutions").glob("inf*/*.py")
                          if p.name != "__init__.py")
TOPICS = sorted(p.name for p in (ROOT / "exercises").glob("inf[0-9][0-9]") if p.is_dir())
needs_solutions = pytest.mark.skipif(not (ROOT / "solutions").is_dir(),
                                     reason="an instructors' check: the student release has no solutions/")


@needs_solutions
def test_committed_stubs_equal_the_generated_ones():
    stale = [str(p.relative_to(ROOT)) for p, text in stubs.expected_stubs().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"stubs out of date with their solutions (run `make stubs`): {stale}"


def test_stub_generator_replaces_regions_and_names_the_function():
    source = ('import os\n# BEGIN SOLUTION\nimport math\n# END SOLUTION\n\n\nclass Cache:\n'
              '    def update(self, k):\n        """doc"""\n        # BEGIN SOLUTION\n        return k\n'
              '        # END SOLUTION\n')
    out = stubs.generate_stub(source, "inf99")
    assert "import math" not in out and "return k" not in out and '"""doc"""' in out
    assert 'raise NotStarted("inf99: implement Cache.update")' in out and "from lab.errors import NotStarted" in out
    with pytest.raises(stubs.MarkerError):
        stubs.generate_stub("def f():\n    # BEGIN SOLUTION\n    pass\n", "inf99")


def _public_api(path: Path) -> dict[str, str]:
    """name -> signature text of every public top-level function, class and method of a module."""
    api = {}

    def visit(body, prefix=""):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                returns = ast.unparse(node.returns) if node.returns else ""
                api[prefix + node.name] = f"({ast.unparse(node.args)}) -> {returns}"
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                api[prefix + node.name] = "class(" + ", ".join(ast.unparse(b) for b in node.bases) + ")"
                visit(node.body, prefix + node.name + ".")
    visit(ast.parse(path.read_text()).body)
    return api


@pytest.mark.parametrize("module", SOLUTION_MODULES, ids=str)
def test_stub_and_solution_expose_the_same_names_and_signatures(module):
    solution, stub = _public_api(ROOT / "solutions" / module), _public_api(ROOT / "exercises" / module)
    assert solution == stub, f"{module}: public API differs; solution-only {set(solution) - set(stub)}, " \
                             f"stub-only {set(stub) - set(solution)}"


def test_committed_notebooks_equal_the_built_ones():
    stale = [str(p.relative_to(ROOT)) for p, text in notebooks.expected_notebooks().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"notebooks out of date (python -m grading.tools.notebooks --write): {stale}"


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_has_lesson_notebook_and_points(topic):
    folder = ROOT / "exercises" / topic
    assert (folder / "README.md").is_file(), f"{topic}: no lesson README.md"
    nb = nbformat.read(folder / f"{topic}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert any(c.cell_type == "code" for c in nb.cells)
    from grading import topics
    found = topics.topic(ROOT, topic)
    assert found is not None and found.points, f"{topic}: no [points] in exercises/{topic}/topic.toml"
    topics.check_targets(found)


@pytest.mark.slow
@needs_solutions
def test_inf00_notebook_runs_end_to_end(monkeypatch):
    monkeypatch.setenv("LAB_IMPL", "solutions")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = notebooks.run("inf00", timeout=300)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


# ------------------------------------------------------------------ every topic, through the grader


def _grade(impl: str, out: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "grading", "--impl", impl, "--json", str(out / "card.json"),
                           "--gradescope", str(out / "results.json"), "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"the grader failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "card.json").read_text())


# Each grading of every topic is done once and shared: the reference's (one topic at a time, as students'
# work is graded: its speed tests have the machine to themselves) serves the solutions' points and the
# points-table check (its records hold every topic's collection); the stubs' runs two topics at a time,
# since every test stops at a stub before anything is timed.
@pytest.fixture(scope="module")
def solution_grading(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("solutions")
    return _grade("solutions", out), out


@pytest.fixture(scope="module")
def solution_card(solution_grading):
    return solution_grading[0]


@pytest.fixture(scope="module")
def stub_card(tmp_path_factory):
    return _grade("exercises", tmp_path_factory.mktemp("exercises"), "--jobs", str(min(2, os.cpu_count() or 1)))


def _topic(card: dict, topic: str) -> dict:
    return next(t for t in card["topics"] if t["topic"] == topic)


@pytest.mark.timeout(3600)   # sets up the reference's grading of every topic (module fixture)
def test_points_table_matches_the_collected_tests(request):
    from grading import runner
    from grading.rubric import check_against_collection
    runs = None
    if (ROOT / "solutions").is_dir():           # the reference's grading collected every topic: no second collection
        card, out = request.getfixturevalue("solution_grading")
        runs = [runner.load_run(t["topic"], out / "records" / f"{t['topic']}.jsonl") for t in card["topics"]]
    problems = check_against_collection(runs=runs)
    assert not problems, "the topics' [points] (topic.toml) and the tests disagree:\n" + "\n".join(problems)


@needs_solutions
@pytest.mark.timeout(3600)   # grades every topic once (module fixture); 600 s is too short
@pytest.mark.parametrize("topic", TOPICS)
def test_solutions_earn_every_point_gradable_here(solution_card, topic):
    card = _topic(solution_card, topic)
    short = [f"{t['name']}: {t['state']}: {t['message']}" for t in card["tests"]
             if t["points"]["earned"] < t["points"]["possible_here"]]
    assert not short, f"{topic} with the reference solutions ({card['status']}):\n" + "\n".join(short)


@needs_solutions          # in a student's checkout the stubs are no longer untouched
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("topic", TOPICS)
def test_untouched_stubs_score_zero_and_fail_only_as_not_started(stub_card, topic):
    card = _topic(stub_card, topic)
    assert card["points"]["earned"] == 0, f"{topic}: the stubs earned {card['points']['earned']} points"
    wrong = [f"{t['name']}: {t['state']}: {t['message']}" for t in card["tests"]
             if t["state"] not in ("not started", "not graded on this hardware")]
    assert not wrong, f"{topic}: with the stubs, tests must fail only by reaching a stub:\n" + "\n".join(wrong)
