"""Ranking metrics from the rank of each target in a full ranking.

Ranks are 0-based positions in the ranking of the whole catalogue (history excluded), with ties
broken by item row, lower first. For a user with targets T and ranks r(t):

- Recall@k = |{t : r(t) < k}| / |T|
- HitRate@k = 1 if any r(t) < k else 0
- NDCG@k = Σ_{r(t) < k} 1/log2(r(t) + 2)  /  Σ_{j < min(|T|, k)} 1/log2(j + 2)
- MRR = 1 / (min_t r(t) + 1)   (not truncated)

Each is averaged over users; over no users it is NaN with an ``UndefinedMetricWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np


class UndefinedMetricWarning(UserWarning):
    """A metric was asked for over an empty set, and is NaN."""


def target_ranks(scores: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of item ``targets[i]`` in row ``rows[i]`` of ``scores``, ties broken by item row.

    ``scores`` is (n_rows, n_items) with excluded items at ``-inf``.
    """
    block = scores[rows]  # (pairs, n_items)
    s_t = block[np.arange(len(rows)), targets][:, None]  # (pairs, 1)
    higher = (block > s_t).sum(axis=1)
    earlier_ties = ((block == s_t) & (np.arange(scores.shape[1])[None, :] < targets[:, None])).sum(axis=1)
    return (higher + earlier_ties).astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(n_rows, k) item rows of the k highest scores per row, ties broken by item row, lower first."""
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k), dtype=np.int64)
    kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k]  # the k-th largest value per row
    out = np.empty((n_rows, k), dtype=np.int64)
    for r in range(n_rows):
        cand = np.flatnonzero(scores[r] >= kth[r])  # usually k items; more only on ties at the edge
        order = np.lexsort((cand, -scores[r, cand]))[:k]
        out[r] = cand[order]
    return out


def _idcg_table(max_targets: int, k: int) -> np.ndarray:
    gains = 1.0 / np.log2(np.arange(k) + 2.0)
    cum = np.concatenate([[0.0], np.cumsum(gains)])
    return cum[np.minimum(np.arange(max_targets + 1), k)]


def ranking_metrics(
    ranks: np.ndarray, user_of: np.ndarray, n_users: int, ks: Iterable[int] = (10, 50)
) -> dict[str, np.ndarray]:
    """Per-user metric arrays (length ``n_users``) from target ranks.

    ``user_of[i]`` is the user (0..n_users-1) that target ``i`` belongs to; every user must have at
    least one target.
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    user_of = np.asarray(user_of, dtype=np.int64)
    n_targets = np.bincount(user_of, minlength=n_users)
    if n_users and n_targets.min() == 0:
        raise ValueError("every user passed to ranking_metrics needs at least one target")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks < k
        hits = np.bincount(user_of, weights=hit, minlength=n_users)
        dcg = np.bincount(user_of, weights=np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0), minlength=n_users)
        out[f"recall@{k}"] = hits / n_targets
        out[f"ndcg@{k}"] = dcg / _idcg_table(int(n_targets.max(initial=0)), k)[n_targets]
        out[f"hit@{k}"] = (hits > 0).astype(np.float64)
    best = np.full(n_users, np.iinfo(np.int64).max)
    np.minimum.at(best, user_of, ranks)
    out["mrr"] = 1.0 / (best + 1.0)
    return out


def mean_metrics(per_user: dict[str, np.ndarray], what: str = "metrics") -> dict[str, float]:
    """Average per-user metrics; NaN with a warning when there are no users."""
    if not per_user or len(next(iter(per_user.values()))) == 0:
        warnings.warn(
            f"{what}: no users to average over; metrics are NaN", UndefinedMetricWarning, stacklevel=2
        )
        return {name: float("nan") for name in per_user}
    return {name: float(np.mean(values)) for name, values in per_user.items()}
