"""`python -m grading sweep` (grading/tools/sweep.py): a topic's correctness tests over many base seeds in one
pytest process, with the solution, a correct variant (tests/variants) or any implementation root."""
from __future__ import annotations

import json
import tomllib

import pytest

from grading.planted import find, materialize
from grading.tools import sweep

TEST = "unpack_int4_inverts_pack"               # inf24, cheap, takes `rng`


def test_the_solution_passes_every_seed_and_each_seed_runs(tmp_path):
    out = tmp_path / "sweep.json"
    assert sweep.main(["--topics", "inf24", "--seeds", "3", "--first", "7", "-k", TEST, "--json", str(out)]) == 0
    (nodeid, result), = json.loads(out.read_text())["inf24"].items()
    assert nodeid.endswith(f"::test_{TEST}") and result["seeds"] == 3 and result["failed"] == []


def test_a_wrong_version_fails_and_names_the_seeds(tmp_path, capsys):
    impl = materialize(find("inf24/swapped-nibbles"), tmp_path / "impl")
    out = tmp_path / "sweep.json"
    assert sweep.main(["--topics", "inf24", "--seeds", "2", "--impl", str(impl), "-k", TEST,
                       "--json", str(out)]) == 1
    (result,) = json.loads(out.read_text())["inf24"].values()
    assert [base for base, _ in result["failed"]] == [0, 1], result
    assert "seeds 0, 1" in capsys.readouterr().out


def test_every_variant_has_a_description_and_applies(tmp_path):
    labels = sweep.variants()
    assert labels, "tests/variants holds the correct variants the sweep runs"
    for label in labels:
        assert tomllib.loads((sweep.VARIANTS_DIR / f"{label}.toml").read_text()).get("description"), label
        sweep.materialize_variant(label, tmp_path / label.replace("/", "-"))   # raises if the diff no longer applies


@pytest.mark.parametrize("argv", [["--topics", "inf99"], ["--topics", "inf24", "--seeds", "0"],
                                  ["--topics", "inf24", "--variant", "inf24/none"],
                                  ["--topics", "inf24", "--impl", "/no/such/folder"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        sweep.main(argv)
    assert exc.value.code == 2
