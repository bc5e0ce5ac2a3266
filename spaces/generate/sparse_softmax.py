"""Sparse softmax (SPACES): only the k largest logits compete, in the loss and at decode time.

Loss per token = logsumexp(top-k logits ∪ {gold logit}) − gold logit. With k ≥ vocabulary size it is
the ordinary cross-entropy; the gold logit is always in the normaliser, so the loss is never negative.
"""

from __future__ import annotations

import torch


def sparse_softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, k: int,
                                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the tokens where ``mask`` is 1; logits [..., V], targets [...]."""
    logits = logits.float()
    gold = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if k >= logits.size(-1):
        normaliser = torch.logsumexp(logits, dim=-1)
    else:
        top, top_idx = logits.topk(k, dim=-1)
        normaliser = torch.logsumexp(top, dim=-1)
        outside = ~(top_idx == targets.unsqueeze(-1)).any(-1)
        normaliser = torch.where(outside, torch.logaddexp(normaliser, gold), normaliser)
    loss = normaliser - gold
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def sparse_log_softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Log-probabilities where only the k largest logits keep mass (the rest are -inf)."""
    if k >= logits.size(-1):
        return torch.log_softmax(logits.float(), dim=-1)
    top, top_idx = logits.float().topk(k, dim=-1)
    out = torch.full_like(logits, float("-inf"), dtype=torch.float32)
    return out.scatter(-1, top_idx, torch.log_softmax(top, dim=-1))
