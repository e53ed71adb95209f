"""The real model's loss by position past its trained context, with and without RoPE scaling (inf23's lesson).

    python -m lab.long_context_ppl --impl solutions --tokens 12288 [--out figure.png]

Text: the whole Python Language Reference of `pydoc_data.topics` (every help() topic, sorted by name,
about 200k tokens on Python 3.11), its first `--tokens` tokens as one sequence. The model reads it in
chunks of `--chunk` tokens through the lab's KV cache (so no [tokens, vocab] logits and no
[tokens, tokens] scores at once) and scores every token; the table gives perplexity per band of
positions, for plain RoPE and for each scaling of `--factor` over the model's max_position_embeddings,
through the implementation's `use_scaled_rope` (inf23). CPU cost grows with tokens squared: 11-35 min per
setting at 12k tokens on the lab's shared 2-core machine, seconds on a GPU.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from lab.cache import DynamicCache
from lab.cli import check_device, positive_float, positive_int, use_impl


def long_text_ids(tokenizer, num_tokens: int) -> list[int]:
    """The first num_tokens tokens of every help() topic of the Language Reference, sorted by name."""
    from pydoc_data.topics import topics
    ids = tokenizer.encode("\n\n".join(topics[name] for name in sorted(topics)))
    if len(ids) < num_tokens:
        raise ValueError(f"the Language Reference has {len(ids)} tokens here, fewer than {num_tokens}")
    return ids[:num_tokens]


@torch.inference_mode()
def token_nll(model, ids: list[int], chunk: int = 512) -> torch.Tensor:
    """Negative log-likelihood [len(ids) - 1] of each token after the first, given all before it."""
    device = model.embed_tokens.weight.device
    x = torch.tensor([ids], device=device)
    cache = DynamicCache(model.config, 1, len(ids), model.embed_tokens.weight.dtype, device)
    out = []
    for start in range(0, len(ids), chunk):
        logits = model(x[:, start:start + chunk], cache=cache)[0].float()             # [chunk, vocab]
        targets = x[0, start + 1:start + chunk + 1]
        out.append(-F.log_softmax(logits[:targets.numel()], -1).gather(-1, targets[:, None])[:, 0])
    return torch.cat(out).cpu()


def scalings(config, factor: float) -> dict[str, dict | None]:
    """The settings compared: plain RoPE, then each scheme stretching the trained length by `factor`."""
    trained = config.max_position_embeddings
    return {
        "plain RoPE": None,
        f"linear x{factor:g}": {"rope_type": "linear", "factor": factor},
        f"dynamic NTK x{factor:g}": {"rope_type": "dynamic", "factor": factor},
        f"YaRN x{factor:g}": {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": trained},
        f"Llama 3 x{factor:g}": {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": trained},
    }


def band_ppl(nll: torch.Tensor, band: int) -> list[float]:
    """Perplexity of each band of `band` positions (token i + 1 is scored at position i + 1)."""
    return [math.exp(nll[i:i + band].double().mean().item()) for i in range(0, nll.numel(), band)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.long_context_ppl", description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="solutions")
    parser.add_argument("--tokens", type=positive_int, default=12288)
    parser.add_argument("--chunk", type=positive_int, default=512)
    parser.add_argument("--factor", type=positive_float, default=2.0)
    parser.add_argument("--band", type=positive_int, default=1024)
    parser.add_argument("--only", default="", help="comma-separated setting names to run (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    check_device(parser, args.device)
    use_impl(parser, args.impl)
    from lab.impl import Topic
    from lab.tokenizer import load_tokenizer
    from lab.weights import load_real_model
    inf23 = Topic("inf23")
    ids = long_text_ids(load_tokenizer(), args.tokens)
    results = {}
    for name, scaling in scalings(load_real_model().config, args.factor).items():
        if args.only and name.split()[0].lower() not in args.only.lower().split(","):
            continue
        model = load_real_model(device=args.device).eval()
        if scaling is not None:
            inf23.rope_scaling.use_scaled_rope(model, scaling, seq_len=len(ids))
        start = time.perf_counter()
        nll = token_nll(model, ids, args.chunk)
        results[name] = band_ppl(nll, args.band)
        print(f"{name:18s} " + " ".join(f"{p:7.2f}" for p in results[name])
              + f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    print("bands of", args.band, "positions from 1; trained context", load_real_model().config.max_position_embeddings)
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, ppl in results.items():
            ax.plot([(i + 0.5) * args.band for i in range(len(ppl))], ppl, marker="o", label=name)
        ax.axvline(load_real_model().config.max_position_embeddings, color="grey", ls="--", label="trained context")
        ax.set(xlabel="position", ylabel=f"perplexity per {args.band} tokens", yscale="log",
               title="SmolLM2-135M past its trained context")
        ax.legend()
        fig.savefig(args.out, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()
