"""Contrastive losses for the two-tower encoder, small enough to test without a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """Softmax cross-entropy of each query over a shared set of candidates (in-batch negatives).

    ``queries`` (P, d) and ``candidates`` (C, d) are unit vectors, so ``q · c`` is a cosine;
    ``targets`` (P,) gives each query's positive among the candidates. ``exclude`` (P, C), when
    given, marks candidates that must not act as negatives for a query (the user's own history, a
    duplicate of the positive); a query's positive is never excluded.

        loss = mean_p  -log( exp(q_p·c_t / τ) / Σ_{c not excluded} exp(q_p·c / τ) )

    ``bias`` (C,), when given, is added to every query's logits: a learned prior per candidate
    (its popularity), which then need not be written into the embeddings.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(
        self,
        queries: torch.Tensor,
        candidates: torch.Tensor,
        targets: torch.Tensor,
        exclude: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = queries @ candidates.T / self.temperature  # (P, C)
        if bias is not None:  # (C,) a per-candidate prior in logit units
            logits = logits + bias[None, :]
        if exclude is not None:
            keep_target = F.one_hot(targets, candidates.shape[0]).bool()
            logits = logits.masked_fill(exclude & ~keep_target, float("-inf"))
        return F.cross_entropy(logits, targets)
