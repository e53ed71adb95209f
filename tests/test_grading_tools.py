"""The grader's instructor tools: isolated submissions, hidden tests, memory limits, history, the student
release and its smoke test, Gradescope's run_autograder, GitHub Classroom's configuration, doctor, flips.
Grading runs use the fake lab (tests/grading_fixtures/repo) except the release's smoke test (inf00)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grading import export, history, isolate, processes, report, rubric, runner
from grading import topics
from grading.tools import calibrate, classroom, doctor, release, stubs
from grading.tools import topic as topic_tool
from grading.__main__ import main
from lab.paths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURE = ROOT / "tests" / "grading_fixtures" / "repo"
SOLVED_TOY = (FIXTURE / "solutions" / "inf97" / "toy.py").read_text()
HIDDEN_TEST = ("import fakelab\n\n\ndef test_hidden_scale_large():\n"
               "    assert fakelab.load('inf97').scale(1001, 3) == 3003\n")
needs_solutions = pytest.mark.skipif(not (ROOT / "solutions").is_dir(), reason="builds a release from solutions/")
needs_autograder = pytest.mark.skipif(not (ROOT / "grading" / "autograder").is_dir(),
                                      reason="the Gradescope scripts are instructors' material")


@pytest.fixture
def lab(tmp_path) -> Path:
    """A copy of the fake lab with a hidden test for inf97 (and its points beside the table)."""
    root = tmp_path / "lab"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "grading" / "hidden" / "inf97").mkdir(parents=True)
    (root / "grading" / "hidden" / "inf97" / "test_hidden_inf97.py").write_text(HIDDEN_TEST)
    (root / "hidden").mkdir()
    (root / "hidden" / "points.toml").write_text("[inf97]\ntest_hidden_scale_large = 2\n")
    return root


def submission(parent: Path) -> Path:
    """inf97 solved, plus a rewritten test and a conftest that would make anything pass: both ignored."""
    sub = parent / "checkout" / "exercises"
    (sub / "inf97").mkdir(parents=True)
    (sub / "inf97" / "toy.py").write_text(SOLVED_TOY)
    (sub / "inf97" / "test_inf97.py").write_text("def test_scale_doubles():\n    pass\n")
    (sub / "conftest.py").write_text("def pytest_runtest_call(item):\n    pass\n")
    return sub.parent


def test_a_submission_is_graded_from_its_stub_modules_in_a_clean_tree(lab, tmp_path):
    out = tmp_path / "out"
    code = main(["--root", str(lab), "--points", str(lab / "points.toml"), "--topics", "inf95,inf97",
                 "--submission", str(submission(tmp_path)), "--out", str(out), "--json", str(out / "card.json"),
                 "--gradescope", str(out / "results.json"), "--seed", "7"])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    jsonschema.validate(card, json.loads((ROOT / "grading" / "scorecard_schema.json").read_text()))
    statuses = {t["topic"]: (t["status"], t["points"]["earned"]) for t in card["topics"]}
    assert statuses == {"inf95": ("not started", 0), "inf97": ("complete", 7)}     # 5 + the hidden test's 2
    files = card["submission"]["files"]
    assert [(f["topic"], f["module"], f["sha256"]) for f in files] == \
        [("inf97", "toy.py", hashlib.sha256(SOLVED_TOY.encode()).hexdigest())]
    ignored = {i["path"]: i["reason"] for i in card["submission"]["ignored"]}
    assert ignored["exercises/inf97/test_inf97.py"].startswith("a test file")
    assert ignored["exercises/conftest.py"].startswith("not a module a student edits")
    assert "inf95/toy.py" in card["submission"]["missing"]
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, json.loads((ROOT / "grading" / "gradescope_schema.json").read_text()))
    visibility = {t["name"]: t["visibility"] for t in results["tests"]}
    assert visibility["inf97 test_hidden_scale_large"] == export.HIDDEN_VISIBILITY
    assert visibility["inf97 test_scale_doubles"] == "visible"
    assert (lab / "exercises" / "inf97" / "toy.py").read_text().count("NotImplementedError") == 2   # untouched


def test_submission_layouts_zip_and_flat(lab, tmp_path):
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("lab-main/exercises/inf97/toy.py", SOLVED_TOY)
        zf.writestr("../escape.py", "x = 1\n")
    manifest = isolate.collect(archive, lab, ["inf97"], tmp_path / "work")
    assert [f["path"] for f in manifest["files"]] == ["lab-main/exercises/inf97/toy.py"]
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "work" / "escape.py").exists()
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "toy.py").write_text(SOLVED_TOY)
    assert [f["topic"] for f in isolate.collect(flat, lab, ["inf97"], tmp_path)["files"]] == ["inf97"]
    with pytest.raises(isolate.SubmissionError, match="no module of the topics graded"):
        isolate.collect(flat, lab, ["inf97", "inf98"], tmp_path)        # toy.py belongs to both: ambiguous


def test_the_memory_limit_turns_a_runaway_allocation_into_an_error(tmp_path):
    log = tmp_path / "log"
    grab = [sys.executable, "-c", "bytearray(3 << 30)"]
    code, timed_out, _, text = processes.execute(grab, tmp_path, dict(os.environ), log, 60, memory_bytes=1 << 30)
    assert code == 1 and not timed_out and "MemoryError" in text
    torch_ok = [sys.executable, "-c", "import torch; print(torch.ones(3).sum().item())"]
    code, _, _, text = processes.execute(torch_ok, tmp_path, dict(os.environ), log, 300, memory_bytes=16 << 30)
    assert code == 0 and "3.0" in text, f"torch must import under the default 16 GiB limit: {text[-1000:]}"


def _doc(earned: dict[str, float]) -> dict:
    tally = {"earned": 0, "possible_here": 10, "possible": 10}
    return {"schema": "lab-scorecard/1", "impl": "exercises", "root": "/lab", "started_at": "t", "duration_s": 1,
            "limits": {"test_timeout_s": 1, "topic_timeout_s": 1}, "seed": 1, "seeds": {}, "warnings": [],
            "hardware": {"cuda": False, "machine": "x86_64", "torch": "2", "python": "3.12"},
            "totals": {"points": tally, "correctness": tally, "speed": tally},
            "topics": [{"topic": t, "status": "partial", "message": "", "points": dict(tally, earned=e),
                        "correctness": dict(tally, earned=e), "speed": tally, "tests": []} for t, e in earned.items()]}


def test_history_shows_points_gained_per_topic(tmp_path):
    first = _doc({"inf00": 3})
    assert history.progress(tmp_path, first) is None
    history.append(tmp_path, first)
    second = _doc({"inf00": 5, "inf10": 1})
    second["progress"] = history.progress(tmp_path, second)
    assert second["progress"]["topics"] == {"inf00": 2, "inf10": None}
    table = report.terminal(second, width=100).split("\n\n")[1].splitlines()
    assert table[0].split()[:6] == ["topic", "correctness", "speed", "status", "since", "last"]
    assert "+2" in table[1] and "new" in table[2]
    assert history.progress(tmp_path, dict(_doc({"inf00": 5}), impl="solutions")) is None   # another impl


def test_history_compares_each_topic_with_its_own_last_graded_run(tmp_path):
    for started_at, earned in (("t1", {"inf00": 3, "inf10": 4}), ("t2", {"inf00": 5}), ("t3", {"inf24": 2})):
        history.append(tmp_path, dict(_doc(earned), started_at=started_at))
    now = _doc({"inf00": 6, "inf10": 7, "inf24": 2, "inf14": 1})
    now["topics"][0]["status"] = "void"                 # a void result is not a graded one, now or later
    progress = history.progress(tmp_path, now)
    assert progress["topics"] == {"inf00": 1, "inf10": 3, "inf24": 0, "inf14": None}, \
        "each topic is compared with the last run that graded it (inf10: the first run, not the inf24-only one)"
    assert progress["runs"] == {"inf00": "t2", "inf10": "t1", "inf24": "t3", "inf14": None}
    assert progress["since"] == "t3"
    history.append(tmp_path, dict(now, started_at="t4"))
    assert history.progress(tmp_path, _doc({"inf00": 6}))["runs"] == {"inf00": "t2"}, "t4's void inf00 is skipped"


@needs_solutions
def test_the_release_leaves_instructors_material_out_and_grades_as_not_started(tmp_path):
    dest = tmp_path / "release"
    files = release.build(dest)
    for secret in ("solutions", "tests/planted", "grading/hidden", "tests/test_planted.py", "grading/autograder"):
        assert not (dest / secret).exists(), secret
    assert (dest / ".github" / "workflows" / "classroom.yml").is_file()
    for target, text in stubs.expected_stubs(ROOT).items():
        assert (dest / target.relative_to(ROOT)).read_text() == text
    assert "--impl solutions" not in (dest / "exercises" / "inf00" / "README.md").read_text()
    readme = (dest / "README.md").read_text()
    assert "Instructors:" not in readme and "pytest exercises/inf00" in readme
    assert len(files) > 50
    card = release.smoke(dest, ("inf00",))                      # its own grader, its own stubs: not started
    assert [t["status"] for t in card["topics"]] == ["not started"]
    left = [p.name for p in dest.rglob("*") if p.name in ("grading-out", ".benchmarks", ".pytest_cache", "__pycache__")]
    assert not left, f"the smoke test left {left} in the release"
    grader = release.build(tmp_path / "autograder", autograder=True, grader_args="--topics inf00")
    assert {"setup.sh", "run_autograder", "autograder_args", "grading/hidden/inf00/topic.toml"} <= set(grader)
    assert os.access(tmp_path / "autograder" / "run_autograder", os.X_OK)


def test_student_markdown_drops_reference_lines_and_instructor_blocks():
    text = ("# Lab\n```\npytest exercises/inf00\npytest exercises/inf00 --impl solutions   # the reference\n```\n"
            "keep --impl solutions in prose\n<!-- instructors -->\nsecret\n<!-- /instructors -->\nend\n")
    assert release.student_markdown(text) == ("# Lab\n```\npytest exercises/inf00\n```\n"
                                              "keep --impl solutions in prose\nend\n")


def _run_autograder(source: Path, sub: Path, results: Path) -> dict:
    env = {**os.environ, "LAB_AUTOGRADER_SOURCE": str(source), "LAB_AUTOGRADER_SUBMISSION": str(sub),
           "LAB_AUTOGRADER_RESULTS": str(results), "LAB_AUTOGRADER_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "LAB_AUTOGRADER_ARGS": f"--root {source} --points {source / 'points.toml'} --topics inf97"}
    done = subprocess.run(["bash", str(ROOT / "grading" / "autograder" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((results / "results.json").read_text())


@needs_autograder
def test_run_autograder_writes_gradescope_results_even_for_a_bad_submission(lab, tmp_path):
    results = _run_autograder(lab, submission(tmp_path), tmp_path / "results")
    assert results["score"] == 7 and results["extra_data"]["submission"]["files"][0]["module"] == "toy.py"
    (tmp_path / "empty").mkdir()
    failed = _run_autograder(lab, tmp_path / "empty", tmp_path / "results2")
    assert failed["score"] == 0 and "no module of the topics graded" in failed["output"]


def test_classroom_entries_gate_speed_tests_and_leave_gpu_tests_out(lab):
    table = rubric.load_points(lab / "points.toml", include_hidden=False)
    entries = {e["name"]: e for e in classroom.entries(lab, ["inf98"], table)}
    assert "inf98 test_add_on_gpu" not in entries and entries["inf98 test_add_speed"]["points"] == 2
    assert entries["inf98 test_add_speed"]["run"].endswith(
        "'exercises/inf98/test_inf98.py::test_add_speed' 'exercises/inf98/test_inf98.py::test_add_matches_python'")


def test_committed_classroom_config_is_current_for_inf00():
    committed = json.loads((ROOT / classroom.CONFIG).read_text())["tests"]
    table = rubric.load_points(include_hidden=False)
    assert [t for t in committed if t["name"].startswith("inf00 ")] == classroom.entries(ROOT, ["inf00"], table), \
        "run: python -m grading classroom --write"


def test_committed_classroom_config_covers_every_topic():
    """Cheap (no collection): every topic with points has entries, and every entry names a test with points.
    The full comparison is `python -m grading classroom --check`."""
    committed = json.loads((ROOT / classroom.CONFIG).read_text())["tests"]
    table = rubric.load_points(include_hidden=False)
    named = [t["name"].split(" ", 1) for t in committed]
    assert {topic for topic, _ in named} == set(runner.discover_topics(ROOT)) == set(table), \
        "run: python -m grading classroom --write"
    unknown = [f"{topic} {name}" for topic, name in named if name not in table.get(topic, {})]
    assert not unknown, f"entries for tests without points: {unknown}; run: python -m grading classroom --write"


def test_doctor_says_how_to_fix_each_problem():
    def version(numpy="2.4.1"):
        return lambda dist: numpy
    check = doctor.check_package("numpy", None, "2.4", True, "Triton's interpreter", version=version())
    assert (check.state, check.fix) == (doctor.FAIL, "pip install 'numpy<2.4'")
    assert doctor.check_package("numpy", None, "2.4", True, "x", version=version("2.3.5")).state == doctor.OK

    def missing(dist):
        raise doctor.metadata.PackageNotFoundError(dist)
    assert doctor.check_package("bitsandbytes", "0.45", None, False, "x", version=missing).state == doctor.WARN
    assert doctor.check_package("torch", "2.11", None, True, "x", version=missing).fix == doctor.INSTALL


def test_flips_count_the_minority_verdicts():
    assert calibrate.flips([True] * 10) == 0 and calibrate.flips([True] * 9 + [False]) == 1
    assert calibrate.flips([False, True, False, True]) == 2


# ------------------------------------------------------------------- topic.toml and the topic scaffold
@pytest.mark.parametrize("text, problem", [
    ('title = "t"\nminutes = 1\ncolour = 2\n', "unknown key(s) ['colour']"),
    ('title = "t"\nminutes = 1\n[points]\ntest_a = 1.5\n', "[points] test_a: points must be a whole number >= 0"),
    ('title = "t"\nminutes = 1\n[[bans]]\ntargets = ["@int9"]\nreason = "r"\n', "'@int9' names no shared list"),
    ('title = "t"\nminutes = 1\n[[bans]]\ntargets = ["torch"]\n', "give a reason"),
    ('title = "t"\nminutes = 1\n[[bans]]\ntargets = ["torch"]\nreason = "r"\nmodule = "x"\n',
     "unknown key(s) ['module']"),
    ('minutes = 1\n', "add title"),
    ('title = "t"\nminutes = 1\n[points]\ntest_a = { points = 1, requires = ["test_b"] }\n',
     "requires ['test_b'], which are not in [points]"),
])
def test_a_malformed_topic_toml_says_how_to_fix_it(tmp_path, text, problem):
    path = tmp_path / "inf90" / "topic.toml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(topics.TopicError, match=re.escape(problem)):
        topics.load(path)


def test_a_ban_target_that_names_nothing_is_refused(tmp_path):
    path = tmp_path / "inf90" / "topic.toml"
    path.parent.mkdir()
    path.write_text('title = "t"\nminutes = 1\n[[bans]]\ntargets = ["flash_attn", "torch.nn.functional.scaled_dot_'
                    'attention"]\nreason = "r"\n')
    with pytest.raises(topics.TopicError, match=re.escape("['torch.nn.functional.scaled_dot_attention'] name(s) "
                                                          "nothing importable")):
        topics.check_targets(topics.load(path))


def test_topic_scaffold_writes_a_skeleton_the_checks_accept_and_refuses_taken_names(tmp_path):
    files = {p.relative_to(tmp_path).as_posix() for p in topic_tool.create("inf90", tmp_path, title="T")}
    assert {"solutions/inf90/example.py", "exercises/inf90/example.py", "exercises/inf90/test_example.py",
            "exercises/inf90/topic.toml", "exercises/inf90/notebook.py", "exercises/inf90/inf90.ipynb",
            "grading/hidden/inf90/topic.toml"} <= files
    assert stubs.expected_stubs(tmp_path)[tmp_path / "exercises" / "inf90" / "example.py"] == \
        (tmp_path / "exercises" / "inf90" / "example.py").read_text()
    table = rubric.load_points(root=tmp_path)
    assert set(table["inf90"]) == {"test_scale_rows_matches_float64", "test_scale_rows_rejects_bad_input",
                                   "test_hidden_scale_rows_of_one_row_and_half_precision"}
    with pytest.raises(topic_tool.TopicExists, match="inf90 exists already"):
        topic_tool.create("inf90", tmp_path)
    with pytest.raises(ValueError, match="inf \\+ two digits"):
        topic_tool.create("inf9", tmp_path)
