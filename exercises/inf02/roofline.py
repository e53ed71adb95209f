"""inf02 · The roofline: is a phase memory- or compute-bound, and how fast could it possibly run?

Work that does F FLOPs and must move B bytes takes at least max(F / peak FLOP/s, B / peak bytes/s): the
slower of the two resources sets the floor (Williams, Waterman & Patterson, 2009). Its arithmetic
intensity F / B against the machine's ridge (peak FLOP/s / peak bytes/s) says which one: below the ridge
it is memory-bound, above it compute-bound. On an H200 (4.3 TB/s, 673 TFLOP/s bf16) the ridge is 157
FLOP/byte: batch-1 decode (~1 FLOP/byte) is deep in memory-bound land, a 2,048-token prefill (~2,000)
deep in compute-bound land.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.config import ModelConfig
from lab.hardware import Peaks
from lab.errors import NotStarted


@dataclass(frozen=True)
class RooflineEstimate:
    """One phase on one machine's roofline.

    intensity:   FLOPs per byte of the work.
    ridge:       the machine's peak FLOP/s over its peak bytes/s.
    bound:       "memory" when intensity < ridge, else "compute".
    predicted_s: the roofline's floor on the time: the slower of the compute time and the memory time.
    """

    flops: float
    num_bytes: float
    intensity: float
    ridge: float
    bound: str
    predicted_s: float

    @property
    def is_memory_bound(self) -> bool:
        return self.bound == "memory"


def roofline_estimate(flops: float, num_bytes: float, peaks: Peaks) -> RooflineEstimate:
    """Place work of `flops` FLOPs moving `num_bytes` bytes on the roofline of the machine `peaks` describes.

    peaks: `lab.hardware.Peaks` (measured with `lab.hardware.peaks()`, or made up for a machine you do
           not have): copy_bytes_per_s and matmul_flops_per_s.
    Returns a RooflineEstimate with flops and num_bytes as given and the other fields as its docstring
    defines them. Raises ValueError if flops < 0 or num_bytes <= 0.
    """
    raise NotStarted("inf02: implement roofline_estimate")


def phase_estimate(config: ModelConfig, num_tokens: int, peaks: Peaks, past_len: int = 0, batch: int = 1,
                   dtype_bytes: int = 2) -> RooflineEstimate:
    """The roofline estimate of one forward of the model `config` over `num_tokens` new tokens per
    sequence, with `past_len` tokens already cached, for `batch` sequences, weights and KV in `dtype_bytes`.

    A prefill of P tokens is (num_tokens=P, past_len=0); a decode step at context S is (1, past_len=S).
    Count as inf00 does:
    - FLOPs: 2 per matmul weight per new token (every projection and the output head, which runs on
      every new token), plus attention's 4 * num_heads * head_dim per (new token, key slot) per layer,
      each new token scoring all past_len + num_tokens slots; times batch.
    - bytes: every matmul weight and RMSNorm weight once (2 * num_layers + 1 norms of hidden_size), plus
      per sequence the cached K/V of past_len tokens read and the new tokens' K/V written
      (2 * num_layers * num_kv_heads * head_dim values per token).
    The output head counts as vocab_size x hidden_size matmul weights even when tied to the embedding.
    Returns `roofline_estimate` of those counts. Raises ValueError unless num_tokens >= 1, past_len >= 0
    and batch >= 1.
    """
    raise NotStarted("inf02: implement phase_estimate")
