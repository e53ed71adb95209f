"""inf13 tests: counting compiled graphs and graph breaks with dynamo's counters, and explaining breaks."""
import torch
from torch._dynamo.utils import counters

from lab.impl import Topic

impl = Topic("inf13")


def dynamo_totals() -> tuple[int, int]:
    """The test's own reading of dynamo's process-wide counters: (graphs compiled, graph breaks met)."""
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def scale(x, factor: int):
    return x * factor


def chatty(x):
    y = x.sin()
    print("a print cuts the graph in two")
    return y.cos()


def reads_a_number(x):
    return x * x.sum().item()


def clean(x):
    return (x.sin() * 3).sum(-1)


def test_compile_watch_counts_only_its_block():
    x = torch.randn(7)
    compiled_scale = torch.compile(scale, backend="eager", dynamic=False)   # "eager": trace only, no Inductor
    compiled_scale(x, 1)                                      # compiled before the block: not to be counted
    graphs0, breaks0 = dynamo_totals()
    with impl.compile_watch.CompileWatch() as watch:
        compiled_scale(x, 1)                                  # cached: nothing new
        for factor in (2, 3, 5):                              # a new Python int each call: three recompiles
            compiled_scale(x, factor)
        torch.compile(chatty, backend="eager")(x)             # two graphs around one break
    graphs, breaks = dynamo_totals()
    assert isinstance(watch, impl.compile_watch.CompileWatch), "__enter__ must return the watch itself"
    assert (watch.num_graphs, watch.num_graph_breaks) == (graphs - graphs0, breaks - breaks0), (
        f"inside the block dynamo compiled {graphs - graphs0} graphs and met {breaks - breaks0} graph breaks "
        f"(3 recompiles of scale, 2 graphs and 1 break for chatty); CompileWatch reported "
        f"{watch.num_graphs} graphs and {watch.num_graph_breaks} breaks")
    assert len(watch.graph_break_reasons) == 1 and "print" in watch.graph_break_reasons[0], \
        f"expected one break reason, about print; got {watch.graph_break_reasons}"
    with impl.compile_watch.CompileWatch() as quiet:
        compiled_scale(x, 3)
    assert (quiet.num_graphs, quiet.num_graph_breaks, quiet.graph_break_reasons) == (0, 0, []), \
        f"a cached call compiles nothing; CompileWatch reported {quiet}"


def test_graph_break_reasons_name_the_print_and_the_item():
    x = torch.randn(5, 3)
    for fn, word in ((chatty, "print"), (reads_a_number, "item")):
        reasons = impl.compile_watch.graph_break_reasons(fn, x)
        assert isinstance(reasons, list) and len(reasons) == 1 and word in str(reasons[0]), \
            f"{fn.__name__} breaks its graph once, at a `{word}`; got {reasons}"
    assert impl.compile_watch.graph_break_reasons(clean, x) == [], "a function dynamo traces whole has no break"
