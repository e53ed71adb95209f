from solutions.inf11.error import *  # noqa: F401,F403

import torch


def logit_error(ref_logits, logits):
    if ref_logits.shape != logits.shape:
        raise ValueError("shapes differ")
    ref, got = ref_logits.double(), logits.double()
    diff = (got - ref).abs()
    ref_logp, logp = torch.log_softmax(ref, dim=-1), torch.log_softmax(got, dim=-1)
    kl = (logp.exp() * (logp - ref_logp)).sum(-1)                         # wrong: KL(p || p_ref)
    return {"max_abs": diff.max().item(), "mean_abs": diff.mean().item(), "kl": kl.mean().item(),
            "top1": (ref.argmax(-1) == got.argmax(-1)).double().mean().item()}
