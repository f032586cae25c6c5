"""The evaluation protocol: rank the whole catalogue for each target user, chunk by chunk.

For each chunk of users the scorer returns (chunk, n_items) scores; the users' training items are
set to -inf (history excluded); the rank of each target and the top-k list are taken; the chunk is
dropped. Memory is bounded by the chunk, never users × items for the whole population.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from recsys.data.split import Split
from recsys.data.train_data import TrainData
from recsys.evaluation.metrics import mean_metrics, ranking_metrics, target_ranks, top_k
from recsys.scorers.base import Scorer

# Slices: users by training-history length; targets by the item's training interactions.
HISTORY_BUCKETS = (0, 4, 8, 16)  # 1-3, 4-7, 8-15, 16+ (0: no history)
ITEM_BUCKETS = (0, 1, 5, 20)  # 0 (cold), 1-4, 5-19, 20+


def _bucket_labels(edges: tuple[int, ...]) -> list[str]:
    labels = []
    for lo, hi in zip(edges, (*edges[1:], None), strict=True):
        if hi is None:
            labels.append(f"{lo}+")
        elif hi - lo == 1:
            labels.append(f"{lo}")
        else:
            labels.append(f"{lo}-{hi - 1}")
    return labels


def bucketize(values: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    labels = np.array(_bucket_labels(edges))
    return labels[np.searchsorted(np.asarray(edges), values, side="right") - 1]


@dataclass
class EvalResult:
    """Metrics of one scorer on one split, with the protocol that produced them."""

    model: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    protocol: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    per_target: pl.DataFrame | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "slices": self.slices,
            "config": self.config,
            "seconds": self.seconds,
        }


def describe_protocol(
    data: TrainData, split: Split, ks: tuple[int, ...], coverage_k: tuple[int, ...]
) -> dict[str, Any]:
    return {
        **split.protocol,
        "ranking": f"full catalogue ({data.n_items} items), training history excluded",
        "tie_breaking": "equal scores ordered by item row (catalogue order), lower first",
        "ks": list(ks),
        "coverage_ks": list(coverage_k),
        "metrics": "recall, ndcg, hit per user averaged over users; mrr untruncated; "
        "coverage@k = distinct items in all top-k lists / catalogue size",
        "slices": {
            "history_length": _bucket_labels(HISTORY_BUCKETS),
            "target_item_train_count": _bucket_labels(ITEM_BUCKETS),
        },
        "train_fingerprint": data.fingerprint,
    }


def evaluate(
    scorer: Scorer,
    data: TrainData,
    split: Split,
    *,
    ks: tuple[int, ...] = (10, 50),
    coverage_k: tuple[int, ...] = (10,),
    chunk_size: int = 1024,
    progress: bool = False,
    keep_per_target: bool = False,
) -> EvalResult:
    """Evaluate a fitted ``scorer`` on ``split``'s targets (see module docstring)."""
    user_rows, item_rows = data.target_pairs(split)
    if (user_rows < 0).any() or (item_rows < 0).any():
        raise ValueError("split targets name users or items outside the training vocabularies")
    order = np.lexsort((item_rows, user_rows))
    user_rows, item_rows = user_rows[order], item_rows[order]
    eval_users, first = np.unique(user_rows, return_index=True)
    user_pos = np.searchsorted(eval_users, user_rows)  # target → index among eval users
    ranks = np.empty(len(user_rows), dtype=np.int64)
    seen = {k: np.zeros(data.n_items, dtype=bool) for k in coverage_k}
    max_cov = max(coverage_k, default=0)
    nan_rows = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(eval_users),
        desc=f"evaluating {scorer.name}",
        unit="user",
        disable=not progress,
        leave=False,
    )
    bounds = np.append(first, len(user_rows))
    for start in range(0, len(eval_users), chunk_size):
        chunk = eval_users[start : start + chunk_size]
        scores = scorer.score(chunk)  # (chunk, n_items)
        bad = np.isnan(scores)
        if bad.any():
            nan_rows += int(bad.any(axis=1).sum())
            scores[bad] = -np.inf
        # History excluded: every training item of each user goes to -inf.
        hist_rows, hist_cols = data.matrix[chunk].nonzero()
        scores[hist_rows, hist_cols] = -np.inf
        t_lo, t_hi = bounds[start], bounds[min(start + chunk_size, len(eval_users))]
        rows_in_chunk = user_pos[t_lo:t_hi] - start
        ranks[t_lo:t_hi] = target_ranks(scores, rows_in_chunk, item_rows[t_lo:t_hi])
        if max_cov:
            tops = top_k(scores, max_cov)
            eligible = np.isfinite(np.take_along_axis(scores, tops, axis=1))  # excluded items are -inf
            for k in coverage_k:
                seen[k][tops[:, :k][eligible[:, :k]]] = True
        bar.update(len(chunk))
    bar.close()
    if nan_rows:
        warnings.warn(f"{scorer.name}: {nan_rows} user(s) got NaN scores; NaN was ranked last", stacklevel=2)
    per_user = ranking_metrics(ranks, user_pos, len(eval_users), ks)
    metrics = mean_metrics(per_user, scorer.name)
    for k in coverage_k:
        metrics[f"coverage@{k}"] = float(seen[k].mean())
    hist_len = data.history_lengths()[eval_users]
    item_count = data.item_counts[item_rows]
    slices = {
        "history_length": _slice(per_user, bucketize(hist_len, HISTORY_BUCKETS), scorer.name),
        "target_item_train_count": _slice(
            ranking_metrics(ranks, np.arange(len(ranks)), len(ranks), ks),
            bucketize(item_count, ITEM_BUCKETS),
            scorer.name,
        ),
    }
    per_target = None
    if keep_per_target:
        per_target = pl.DataFrame(
            {
                "user": data.users.lookup(user_rows),
                "item": data.items.lookup(item_rows),
                "rank": ranks,
                "history_length": hist_len[user_pos],
                "item_train_count": item_count,
            }
        )
    return EvalResult(
        model=scorer.name,
        metrics=metrics,
        slices=slices,
        protocol={
            **describe_protocol(data, split, ks, coverage_k),
            "users": len(eval_users),
            "targets": len(ranks),
        },
        config=scorer.describe()["config"],
        seconds={"score": time.perf_counter() - t0},
        per_target=per_target,
    )


def _slice(per_case: dict[str, np.ndarray], labels: np.ndarray, name: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label in sorted(set(labels.tolist()), key=lambda s: int(s.split("-")[0].rstrip("+"))):
        mask = labels == label
        out[label] = {
            "cases": int(mask.sum()),
            **mean_metrics({m: v[mask] for m, v in per_case.items()}, f"{name} slice {label}"),
        }
    return out
