"""Token streams: the one engine interface the benchmark harness (inf03) drives.

A token stream is a function `stream(prompt_ids, max_new_tokens)` that returns an iterator over the new
tokens, yielding each one as soon as the engine has it (an int, or a 0-d tensor still on the device: the
harness synchronizes before it reads the clock). TTFT is the time to the first item, TBT the time between
items. Anything can be made into one:

    stream = greedy_stream(model)                  # the lab model, KV-cached greedy decoding
    stream = no_cache_stream(model)                # your inf00 loop, no cache (a baseline)
    stream = from_generate(my_generate)            # generate(prompt_ids, max_new_tokens) -> list of ids
    stream = from_hooks(my_engine)                 # engine.prefill(prompt_ids) -> id; engine.decode(id) -> id

A non-streaming `generate` delivers every token at the end, so its TTFT is its whole latency: that is what
a client of a non-streaming API waits for, and the benchmark reports it honestly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, SupportsInt, TypeVar

import torch

from lab.cache import DynamicCache
from lab.impl import Topic

if TYPE_CHECKING:
    from lab.model import LlamaModel

TokenStream = Callable[[list[int], int], Iterable[object]]
Token = TypeVar("Token", bound=SupportsInt)      # an int, or a 0-d tensor


class PrefillDecodeEngine(Protocol[Token]):
    """An engine driven one step at a time: `prefill` consumes a prompt and returns its first new token;
    `decode` takes the last token and returns the next. One request at a time."""

    def prefill(self, prompt_ids: list[int]) -> Token: ...

    def decode(self, token: Token) -> Token: ...


def _is_eos(token: SupportsInt, eos_token_id: int | None) -> bool:
    return eos_token_id is not None and int(token) == eos_token_id


def from_generate(generate: Callable[[list[int], int], Iterable[object]]) -> TokenStream:
    """A stream from a non-streaming `generate(prompt_ids, max_new_tokens) -> tokens`: all tokens arrive
    when generate returns."""
    def stream(prompt_ids: list[int], max_new_tokens: int) -> Iterator[object]:
        yield from list(generate(prompt_ids, max_new_tokens))
    return stream


def from_hooks(engine: PrefillDecodeEngine[Token], eos_token_id: int | None = None) -> TokenStream:
    """A stream from an engine with `prefill` and `decode` hooks; stops after `eos_token_id` (included)."""
    def stream(prompt_ids: list[int], max_new_tokens: int) -> Iterator[object]:
        token = engine.prefill(prompt_ids)
        for step in range(max_new_tokens):
            if step:
                token = engine.decode(token)
            yield token
            if _is_eos(token, eos_token_id):
                return
    return stream


class _GreedyEngine:
    """Greedy decoding of a `lab.model.LlamaModel` with `lab.cache.DynamicCache`, tokens kept on the device."""

    def __init__(self, model: LlamaModel, max_len: int):
        self.model, self.max_len = model, max_len
        self.cache: DynamicCache | None = None
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    @torch.inference_mode()
    def prefill(self, prompt_ids: list[int]) -> torch.Tensor:
        ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.device)[None]            # [1, P]
        self.cache = DynamicCache(self.model.config, 1, self.max_len, dtype=self.dtype, device=self.device)
        return self.model(ids, cache=self.cache, last_only=True)[0, -1].argmax()                # 0-d, on device

    @torch.inference_mode()
    def decode(self, token: torch.Tensor) -> torch.Tensor:
        return self.model(token.view(1, 1), cache=self.cache, last_only=True)[0, -1].argmax()


def greedy_stream(model: LlamaModel, max_len: int | None = None, eos_token_id: int | None = None) -> TokenStream:
    """KV-cached greedy decoding of the lab model, one request at a time; each token is yielded as a 0-d
    tensor on the model's device without waiting for it. `max_len` bounds prompt + output (default: the
    model's max_position_embeddings, capped at 4,096)."""
    engine = _GreedyEngine(model, max_len or min(model.config.max_position_embeddings, 4096))
    return from_hooks(engine, eos_token_id)


def no_cache_stream(model: torch.nn.Module, eos_token_id: int | None = None) -> TokenStream:
    """Greedy decoding without a cache, a baseline: every step re-runs the whole sequence through *your*
    inf00 `greedy_generate` (one new token per call), so it needs inf00 done."""
    generate = Topic("inf00").generate.greedy_generate

    def stream(prompt_ids: list[int], max_new_tokens: int) -> Iterator[int]:
        ids = list(prompt_ids)
        for _ in range(max_new_tokens):
            token = generate(model, ids, 1)[0]
            yield token
            if _is_eos(token, eos_token_id):
                return
            ids.append(token)
    return stream
