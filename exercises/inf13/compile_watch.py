"""inf13 · torch.compile: seeing what the compiler did, through dynamo's own counters.

A compiled step is fast only if it is compiled once and runs as one graph. Two things silently undo it:
- a *recompile*: a guard fails (a Python number changed, a shape changed, a new object came in) and
  dynamo traces and compiles the function again, taking seconds, or after `recompile_limit` (8) times
  gives up and runs it eagerly;
- a *graph break*: dynamo meets something it cannot trace (`print`, `.item()`, data-dependent Python
  control flow), cuts the graph there and runs that piece in Python, between two smaller graphs.
`torch._dynamo.utils.counters` counts both for the whole process; `torch._dynamo.explain` traces a
function once and reports its graphs and breaks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch._dynamo.utils import counters

from lab.errors import NotStarted


@dataclass
class CompileWatch:
    """What dynamo did inside a `with` block, from the change in `torch._dynamo.utils.counters`.

        with CompileWatch() as watch:
            for _ in range(20):
                compiled_step(token_ids, cache_position)
        watch.num_graphs          # graphs compiled inside the block: after a warm-up call, recompiles
        watch.num_graph_breaks    # graph breaks met while tracing inside the block
        watch.graph_break_reasons # dynamo's reason for each kind of break met inside the block

    The counters are process-wide: the watch reports only what happened between entering and leaving
    its block (nested or repeated watches each see their own block), and the reasons without repeats.
    It does not swallow an exception raised in the block. Hints: README.md, "Hints".
    """

    num_graphs: int = 0
    num_graph_breaks: int = 0
    graph_break_reasons: list[str] = field(default_factory=list)

    def __enter__(self) -> "CompileWatch":
        raise NotStarted("inf13: implement CompileWatch.__enter__")

    def __exit__(self, *exc_info) -> None:
        raise NotStarted("inf13: implement CompileWatch.__exit__")


def graph_break_reasons(fn: Callable, *args) -> list[str]:
    """Why dynamo would cut `fn(*args)` into several graphs: one reason per break, [] for one graph.

    The reasons are dynamo's own texts (e.g. mentioning `print` or `Tensor.item()`), as
    `torch._dynamo.explain` reports them; fn is traced (not compiled by Inductor) and its result discarded.
    Note: explain resets dynamo, so every function compiled before recompiles on its next call.
    Hints: README.md, "Hints".
    """
    raise NotStarted("inf13: implement graph_break_reasons")
