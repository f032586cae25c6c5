"""InfoNCE maths, checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.text.losses import InfoNCELoss


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def reference(q: np.ndarray, c: np.ndarray, t: np.ndarray, tau: float, exclude=None, bias=None) -> float:
    losses = []
    for p in range(len(q)):
        logits = c @ q[p] / tau + (0.0 if bias is None else bias)
        keep = np.ones(len(c), bool) if exclude is None else ~exclude[p]
        keep[t[p]] = True
        m = logits[keep].max()
        lse = m + np.log(np.exp(logits[keep] - m).sum())
        losses.append(lse - logits[t[p]])
    return float(np.mean(losses))


def test_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    q, c = unit(torch.randn(5, 8, generator=g)), unit(torch.randn(7, 8, generator=g))
    t = torch.tensor([0, 3, 6, 2, 2])
    for tau in (0.05, 0.5, 1.0):
        got = InfoNCELoss(tau)(q, c, t).item()
        assert got == pytest.approx(reference(q.numpy(), c.numpy(), t.numpy(), tau), rel=1e-5)


def test_bias_is_a_prior_added_to_every_query_logits():
    g = torch.Generator().manual_seed(2)
    q, c = unit(torch.randn(4, 8, generator=g)), unit(torch.randn(6, 8, generator=g))
    t = torch.tensor([0, 5, 2, 2])
    bias = torch.randn(6, generator=g)
    got = InfoNCELoss(0.1)(q, c, t, bias=bias).item()
    assert got == pytest.approx(reference(q.numpy(), c.numpy(), t.numpy(), 0.1, bias=bias.numpy()), rel=1e-5)
    # A constant bias changes nothing; a bias toward the targets lowers the loss.
    assert InfoNCELoss(0.1)(q, c, t, bias=torch.full((6,), 3.0)).item() == pytest.approx(
        InfoNCELoss(0.1)(q, c, t).item(), rel=1e-6
    )
    toward = torch.zeros(6).index_fill_(0, t, 2.0)
    assert InfoNCELoss(0.1)(q, c, t, bias=toward).item() < InfoNCELoss(0.1)(q, c, t).item()


def test_exclusion_removes_candidates_but_never_the_target():
    g = torch.Generator().manual_seed(1)
    q, c = unit(torch.randn(3, 4, generator=g)), unit(torch.randn(5, 4, generator=g))
    t = torch.tensor([1, 4, 0])
    exclude = torch.zeros(3, 5, dtype=torch.bool)
    exclude[0, 2] = exclude[1, 0] = exclude[1, 3] = True
    exclude[2, 0] = True  # marks the target itself: ignored
    got = InfoNCELoss(0.1)(q, c, t, exclude).item()
    assert got == pytest.approx(reference(q.numpy(), c.numpy(), t.numpy(), 0.1, exclude.numpy()), rel=1e-5)
    # Excluding a candidate equals dropping it from the candidate set.
    dropped = InfoNCELoss(0.1)(q[:1], c[[0, 1, 3, 4]], torch.tensor([1])).item()
    assert InfoNCELoss(0.1)(q[:1], c, t[:1], exclude[:1]).item() == pytest.approx(dropped, rel=1e-6)


def test_perfect_alignment_low_temperature_near_zero_loss():
    c = torch.eye(4)
    loss = InfoNCELoss(0.01)(c.clone(), c, torch.arange(4))
    assert loss.item() < 1e-6
    # A uniform scorer's loss is log(C).
    flat = InfoNCELoss(1.0)(torch.zeros(2, 4), c, torch.tensor([0, 1]))
    assert flat.item() == pytest.approx(np.log(4))


def test_gradients_flow_to_both_sides():
    q = unit(torch.randn(2, 3)).requires_grad_()
    c = unit(torch.randn(4, 3)).requires_grad_()
    InfoNCELoss(0.1)(q, c, torch.tensor([0, 1])).backward()
    assert q.grad is not None and c.grad is not None and c.grad.abs().sum() > 0


def test_rejects_bad_temperature():
    with pytest.raises(ValueError):
        InfoNCELoss(0.0)
