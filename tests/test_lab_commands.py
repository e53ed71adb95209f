"""The lab's own commands (python -m lab.decode_bench, flash_bench, paged_bench, long_context_ppl) answer bad
input with one argparse line and exit status 2, never a traceback; lab.cli's types say what was wrong."""
from __future__ import annotations

import argparse
import importlib

import pytest

from lab import cli
from lab.paths import REPO_ROOT

BAD = [
    ("decode_bench", ["--shape", "bogus"], "invalid choice: 'bogus'"),
    ("decode_bench", ["--new-tokens", "0"], "'0': must be at least 1"),
    ("decode_bench", ["--prompt-len", "x"], "'x' is not a whole number"),
    ("decode_bench", ["--budget-s", "nan"], "must be a finite number above 0"),
    ("decode_bench", ["--variants", ","], "--variants names none"),
    ("decode_bench", ["--variants", "lab-fast"], "unknown variants ['lab-fast']"),
    ("decode_bench", ["--impl", "nowhere"], "'nowhere' is none of these"),
    ("decode_bench", ["--profile", "0"], "'0': must be at least 1"),
    ("flash_bench", ["--seq-lens", "1024,0"], "'0': must be at least 1"),
    ("flash_bench", ["--variants", "mine"], "variants must be among"),
    ("paged_bench", ["--batch", ","], "names no number"),
    ("paged_bench", ["--rounds", "-3"], "'-3': must be at least 1"),
    ("paged_bench", ["--impl", "nowhere"], "'nowhere' is none of these"),
    ("long_context_ppl", ["--factor", "-1"], "'-1': must be a finite number above 0"),
    ("long_context_ppl", ["--tokens", "1.5"], "'1.5' is not a whole number"),
    ("long_context_ppl", ["--impl", "nowhere"], "'nowhere' is none of these"),
]


@pytest.mark.parametrize("command, argv, says", BAD, ids=[f"{c}{' '.join(a)}" for c, a, _ in BAD])
def test_a_bad_argument_gets_one_line_and_status_2(command, argv, says, capsys, monkeypatch):
    monkeypatch.delenv("LAB_IMPL", raising=False)
    module = importlib.import_module(f"lab.{command}")
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert f"python -m lab.{command}: error:" in err and says in err and "Traceback" not in err, err


def test_without_a_gpu_the_gpu_benches_say_so(capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("flash_bench", "paged_bench"):
        with pytest.raises(SystemExit) as stop:
            importlib.import_module(f"lab.{name}").main(["--impl", "solutions"])
        assert stop.value.code == 2 and "needs a CUDA GPU" in capsys.readouterr().err


def test_cli_types():
    assert cli.positive_int("7") == 7 and cli.positive_float("0.5") == 0.5
    assert cli.int_list(" 1, 16,32 ,") == [1, 16, 32]
    for bad, fn in (("0", cli.positive_int), ("2.0", cli.positive_int), ("inf", cli.positive_float),
                    ("0", cli.positive_float), ("", cli.int_list), ("4,x", cli.int_list)):
        with pytest.raises(argparse.ArgumentTypeError):
            fn(bad)


@pytest.mark.skipif(not (REPO_ROOT / "solutions").is_dir(), reason="needs solutions/ (instructors)")
def test_decode_bench_profiles_where_a_step_goes():
    """`--profile N` (issue 10: where a decode step's time goes) on this CPU, the real model's shape, eager: a
    table of the step's operators, the matrix products first, summed against the step's wall time; lab-triton
    says it needs a GPU instead of failing. In a process of its own, as an instructor runs it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LAB_IMPL": "solutions"}
    done = subprocess.run([sys.executable, "-m", "lab.decode_bench", "--impl", "solutions", "--shape", "smollm2-135m",
                           "--device", "cpu", "--new-tokens", "3", "--repeats", "1", "--variants",
                           "lab-eager,lab-triton", "--profile", "2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| lab-triton   | skipped: a Triton GEMV needs a CUDA GPU |" in out, out
    table = out.split("profile of lab-eager: ", 1)[1]
    assert "operators a step" in table.splitlines()[0] and "% busy)" in table.splitlines()[0], table[:500]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[3:] if line.startswith("| ")]
    assert rows and rows[0][0].strip() == "aten::mm", rows[:3]        # 7 projections a layer, 30 layers, the head
    assert int(rows[0][1]) == 7 * 30 + 1, rows[0]
