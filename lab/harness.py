"""How the tests run the student's code on the hardware at hand: Triton kernels on a GPU or in the Triton
interpreter, and timed work replayed from a CUDA graph.

    def check_my_kernel(seed): ...               # module level in the test file
    def test_my_kernel(seed):
        kernel_check(check_my_kernel, seed)      # here on a GPU; in the interpreter's child process elsewhere

    run = cuda_graph_replay(fn, inputs, device)  # run() -> fn(*inputs)'s outputs
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from lab.triton_interpreter import run_in_interpreter


def kernel_check(check: Callable[[int], None], seed: int) -> None:
    """Run `check(seed)`, a module-level function of a test file: directly on a GPU, and on a CPU in a
    child process under the Triton interpreter (lab.triton_interpreter), which imports its file anew."""
    __tracebackhide__ = True
    if torch.cuda.is_available():
        check(seed)
    else:
        run_in_interpreter(inspect.getfile(check), check.__name__, seed)


def cuda_graph_replay(fn: Callable[..., Any], inputs: tuple = (), device: str = "cuda", *, warmup: int = 3,
                      keep: tuple = ()) -> Callable[[], Any]:
    """`run() -> fn(*inputs)`'s outputs. On a GPU, fn is captured once in a CUDA graph and replayed, so that
    a replay costs the kernels' time alone, not one Python launch per kernel (a Triton launch costs tens of
    microseconds of CPU, as long as a small kernel runs); refill `inputs` in place between replays. On a
    CPU it runs eagerly (the same code path, for checking a test's harness).

    The graph replays into the tensors it captured: `inputs`, the outputs and whatever is in `keep` (a
    cache, an index tensor) stay referenced by `run` as long as it lives, or their memory is reused and
    the replay reads garbage."""
    if device == "cpu":
        return lambda: fn(*inputs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):                  # autotuning and cuBLAS workspaces happen before the capture
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*inputs)

    return _Replay(graph, outputs, captured=(graph, fn, inputs, outputs, keep))


class _Replay:
    """`run()` of cuda_graph_replay on a GPU: replays the graph, returns its outputs."""

    def __init__(self, graph, outputs, captured: tuple):
        self.graph, self.outputs = graph, outputs
        self.captured = captured              # keep what the graph reads and writes alive

    def __call__(self):
        self.graph.replay()
        return self.outputs
