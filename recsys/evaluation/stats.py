"""Uncertainty of a metric difference: the paired bootstrap over evaluation cases."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean of ``a - b`` over paired cases with a percentile bootstrap interval.

    ``a`` and ``b`` hold one value per case (e.g. each user's NDCG@10 under two models), in the same
    order. Cases are resampled with replacement, the pairs kept together, so the interval reflects
    how much the gain depends on which users happened to be evaluated.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty 1-d arrays, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 100):  # 100 resamples at a time bounds the memory
        m = min(100, n_resamples - start)
        idx = rng.integers(0, len(diff), size=(m, len(diff)))
        means[start : start + m] = diff[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return {
        "mean_difference": float(diff.mean()),
        "low": float(lo),
        "high": float(hi),
        "level": level,
        "cases": len(diff),
        "resamples": n_resamples,
    }


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-case NDCG@k of a single relevant item at 0-based ``ranks``."""
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
