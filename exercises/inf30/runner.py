"""inf30 · The model runner: one forward over every chunk of a step, prefills and decodes together.

The scheduler's plan gives each request a chunk: a whole prompt, part of one, or one decode token. The
runner *packs* them into one row, `input_ids [1, num_tokens]`, with no padding: request after request.
Three things make that one row behave like many separate sequences:
- positions: each chunk's tokens sit at start_position, start_position + 1, ... of its own request;
- the mask: a token sees the keys of its own request only, up to its own position (block-diagonal and
  causal), so requests never read each other's K/V;
- the logits: only the last token of each sampling chunk predicts a next token.
`lab.packed_kv.PackedKV` stores every request's K/V and lays the keys out request by request: for each
chunk, its request's tokens 0 .. start_position + len(token_ids) - 1.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from lab.packed_kv import PackedKV
from lab.errors import NotStarted

from .scheduler import ScheduledChunk, StepPlan


@dataclass(frozen=True)
class PackedBatch:
    """One packed forward's inputs. N = total new tokens, S = sum over chunks of start_position + len(tokens).

    input_ids:    [1, N] int64, the chunks' tokens one after another;
    positions:    [1, N] int64, each token's position in its own request;
    mask:         [1, 1, N, S] bool, True where a query token may attend to a key (the key layout is
                  PackedKV's: for each chunk, its request's positions 0 .. start_position + len - 1);
    sample_index: [num sampling chunks] int64, the index in 0..N-1 of each sampling chunk's last token,
                  in plan order.
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    sample_index: torch.Tensor


def pack_chunks(chunks: Sequence[ScheduledChunk], device: torch.device | str = "cpu") -> PackedBatch:
    """Pack a step's chunks into one row with per-request positions and a block-diagonal causal mask.

    Example: chunks A (start 2, tokens [a2, a3]) and B (start 0, tokens [b0]): input_ids [[a2, a3, b0]],
    positions [[2, 3, 0]], keys [A0 A1 A2 A3 | B0]; a3 sees A0..A3, b0 sees B0 only.
    Raises ValueError for an empty plan or an empty chunk. All tensors on `device`.
    """
    raise NotStarted("inf30: implement pack_chunks")


class ModelRunner:
    """Runs plans on a `lab.model.LlamaModel`, keeping every request's K/V in a `lab.packed_kv.PackedKV`."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        weight = next(model.parameters())
        self.kv = PackedKV(model.config, dtype=weight.dtype, device=weight.device)
        self.num_forwards = 0

    @torch.inference_mode()
    def step(self, plan: StepPlan) -> dict[int, int]:
        """Run one step: drop the preempted requests' K/V, then ONE forward over all chunks (unless the plan
        has none). Returns {request_id: greedy next token} for every sampling chunk (an empty dict for an
        empty plan). Count each forward in `self.num_forwards`. The model reads and writes K/V through
        `self.kv`, told the step's chunks (`PackedKV.begin_step`) before the forward; the lesson's hints
        show the model call.
        """
        raise NotStarted("inf30: implement ModelRunner.step")

    def release(self, request_ids: Iterable[int]) -> None:
        """Forget finished requests' K/V."""
        for request_id in request_ids:
            self.kv.drop(request_id)
