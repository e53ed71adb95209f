"""A new topic's skeleton, in the lab's pattern (docs/adding-a-topic.md):

    make topic NAME=inf20                                     # or: python -m grading topic inf20
    python -m grading topic inf20 --title "FlashAttention" --minutes 45 --concept attention

writes solutions/infNN/<concept>.py (a marked example to replace), the generated stub, a test file, the
topic.toml (title, minutes, an example ban, points), README.md and notebook.py skeletons (and the built
notebook), and grading/hidden/infNN/ (a hidden test and its points). It refuses a badly named topic or
one that exists in any of those places. Every file it writes passes the lab's checks as written: the
solution passes its tests, the stub fails them as "not started", stubs and notebooks are current.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lab.paths import REPO_ROOT, TOPIC_FILE, TOPIC_NAME

CONCEPT = re.compile(r"^[a-z][a-z0-9_]*$")


class TopicExists(ValueError):
    pass


SOLUTION = '''"""{name} · {title}: {concept}. Replace this example with the topic's first concept.

Each function's docstring states the CONTRACT (shapes, dtypes, semantics, edge cases, errors) and points to
the lesson; the how-to goes in the lesson's three hints per function (exercises/{name}/README.md, "Hints").
"""
from __future__ import annotations

import math

import torch


def scale_rows(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Multiply each row of `x` by its factor.

    x: [rows, cols], a floating dtype; factors: [rows], the same dtype. Returns a new [rows, cols] tensor
    of x's dtype; `x` is not modified. Raises ValueError when the shapes disagree or a factor is not finite.
    Hints: README.md, "Hints".
    """
    # BEGIN SOLUTION
    if x.dim() != 2 or factors.shape != (x.shape[0],):
        raise ValueError(f"scale_rows expects x [rows, cols] and factors [rows], got {{list(x.shape)}} and "
                         f"{{list(factors.shape)}}")
    if not all(math.isfinite(f) for f in factors.tolist()):
        raise ValueError("scale_rows: every factor must be finite")
    return x * factors[:, None]
    # END SOLUTION
'''

TESTS = '''"""{name} · {concept}: each test compares with an independent oracle on random inputs of odd sizes."""
import pytest
import torch

from lab.impl import Topic
from lab.testing import pick

impl = Topic("{name}")


def test_scale_rows_matches_float64(rng):
    rows, cols = pick(rng, 1, 17), pick(rng, 1, 33)
    x = torch.randn(rows, cols, generator=rng)
    factors = torch.randn(rows, generator=rng)
    expected = (x.double() * factors.double()[:, None]).float()     # the oracle, before the code runs
    before = x.clone()
    got = impl.{concept}.scale_rows(x, factors)
    assert torch.equal(x, before), "scale_rows must not modify its input"
    assert got.shape == (rows, cols), f"expected shape {{[rows, cols]}}, got {{list(got.shape)}}"
    torch.testing.assert_close(got, expected, msg=lambda m: f"scale_rows differs from the float64 reference: {{m}}")


@pytest.mark.parametrize("bad", ["wrong-shape", "not-finite"])
def test_scale_rows_rejects_bad_input(bad):
    x, factors = torch.ones(3, 4), torch.ones(3)
    if bad == "wrong-shape":
        factors = torch.ones(4)
    else:
        factors[1] = float("inf")
    with pytest.raises(ValueError):
        impl.{concept}.scale_rows(x, factors)
'''

TOPIC_TOML = '''# {name}: its metadata, bans and points, declared once (grading/topics.py says what each key means).
title = "{title}"
minutes = {minutes}

# What would do the student's work: banned from the student's code (the tests may still use it). Targets
# are modules or dotted callables; "@name" names a shared list (grading/guard/bans.py).
[[bans]]
targets = ["transformers", "lab.oracle"]
reason = "write it yourself: transformers is the tests' oracle"
# tests = ["test_scale_*"]      # only these tests (base names, fnmatch patterns); default: every test

[points]
# {concept}.py
test_scale_rows_matches_float64 = 2
test_scale_rows_rejects_bad_input = 1
# a speed test: test_scale_rows_beats_a_loop = {{ points = 2, requires = ["test_scale_rows_matches_float64"] }}
'''

README = '''# {name} · {title} ({minutes} min)

TODO: the idea in two paragraphs: what problem it solves in LLM inference and why it is fast.

## The numbers that matter
TODO: bytes and FLOPs for the real model (SmolLM2-135M) and a Llama-3-8B shape on an H100/H200.

## What you implement (in this order)
1. `{concept}.py`: `scale_rows` (replace with the topic's functions).

## Hints
<details><summary>1. The idea</summary>

TODO
</details>
<details><summary>2. The trick</summary>

TODO
</details>
<details><summary>3. The shape of the code</summary>

TODO
</details>

## How it is tested and graded
Each test compares with an independent oracle on random inputs of odd sizes (`pytest exercises/{name}`).
Points per test are in `topic.toml` beside this lesson.

## Sources
TODO: papers and code, with links.
'''

NOTEBOOK = '''# %% [markdown]
# # {name} · {title}
# Run your code from exercises/{name}/ and compare it with the baseline.

# %%
import torch

from lab.impl import Topic

impl = Topic("{name}")

# %% [markdown]
# TODO: measure your implementation and plot it beside the baseline (matplotlib).

# %%
x, factors = torch.randn(4, 5), torch.randn(4)
try:
    print(impl.{concept}.scale_rows(x, factors))
except NotImplementedError as exc:
    print(f"not started yet: {{exc}}")
'''

HIDDEN = '''"""{name}'s hidden tests: other sizes and edge cases, against the same oracles (1 point each)."""
import torch

from lab.impl import Topic

impl = Topic("{name}")


def test_hidden_scale_rows_of_one_row_and_half_precision(rng):
    x = torch.randn(1, 257, generator=rng).half()
    factors = torch.randn(1, generator=rng).half()
    expected = (x.double() * factors.double()[:, None]).half()
    torch.testing.assert_close(impl.{concept}.scale_rows(x, factors), expected)
'''


def create(name: str, root: Path = REPO_ROOT, title: str = "", minutes: int = 45,
           concept: str = "example") -> list[Path]:
    """Write topic `name`'s skeleton under `root`; returns the files written. Raises ValueError (with what
    to do) for a bad name or concept, TopicExists when any of its places exists."""
    from grading.tools import notebooks, stubs
    if not TOPIC_NAME.match(name):
        raise ValueError(f"a topic is named inf + two digits, like inf20; got {name!r}")
    if not CONCEPT.match(concept) or concept.startswith("test") or concept in ("notebook", "conftest"):
        raise ValueError(f"--concept names a module: lower_case letters, digits and _, not a test, notebook "
                         f"or conftest; got {concept!r}")
    root = Path(root)
    places = [root / "exercises" / name, root / "solutions" / name, root / "grading" / "hidden" / name,
              root / "tests" / "planted" / name]
    taken = [p.relative_to(root).as_posix() for p in places if p.exists()]
    if taken:
        raise TopicExists(f"{name} exists already ({', '.join(taken)}); pick a free name or edit it by hand")
    fields = {"name": name, "title": title or name, "minutes": int(minutes), "concept": concept}
    solution = SOLUTION.format(**fields)
    written = {
        root / "solutions" / name / "__init__.py": "",
        root / "solutions" / name / f"{concept}.py": solution,
        root / "exercises" / name / "__init__.py": "",
        root / "exercises" / name / f"{concept}.py":
            stubs.generate_stub(solution, name, f"solutions/{name}/{concept}.py"),
        root / "exercises" / name / f"test_{concept}.py": TESTS.format(**fields),
        root / "exercises" / name / TOPIC_FILE: TOPIC_TOML.format(**fields),
        root / "exercises" / name / "README.md": README.format(**fields),
        root / "exercises" / name / "notebook.py": NOTEBOOK.format(**fields),
        root / "grading" / "hidden" / name / "__init__.py": "",
        root / "grading" / "hidden" / name / f"test_hidden_{name}.py": HIDDEN.format(**fields),
        root / "grading" / "hidden" / name / TOPIC_FILE:
            f"# {name}'s hidden tests: their points (they get the public topic's bans).\n[points]\n"
            f"test_hidden_scale_rows_of_one_row_and_half_precision = 1\n",
    }
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    import nbformat
    source = root / "exercises" / name / "notebook.py"
    target = notebooks.target_of(source)
    target.write_text(nbformat.writes(notebooks.build(source)) + "\n")
    return [*written, target]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading topic", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the topic, e.g. inf20")
    parser.add_argument("--title", default="", help="its title (default: the name)")
    parser.add_argument("--minutes", type=int, default=45, help="its length in minutes (default 45)")
    parser.add_argument("--concept", default="example", help="the first module's name (default: example)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        files = create(args.name, args.root, args.title, args.minutes, args.concept)
    except ValueError as exc:
        print(f"python -m grading topic: error: {exc}", file=sys.stderr)
        return 2
    for path in files:
        print(f"wrote {path.relative_to(args.root)}")
    print(f"next: replace the example in solutions/{args.name}/, then `make stubs`, `python -m grading notebooks "
          f"--write`, `pytest exercises/{args.name} --impl solutions`; docs/adding-a-topic.md lists the rest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
