"""Candidate generation: each source's top items per user, merged, with every source's rank kept.

A source is a fitted scorer. For a chunk of users every source scores the whole catalogue once;
items in the user's history (and items a source cannot recommend, scored ``-inf``) are dropped;
each source contributes its ``depth`` best items. The union, one row per (user, item), keeps each
source's rank of the item over the catalogue (so a feature can say "ALS rank 3" even when the item
came from co-visitation). The same score matrices then feed the features, so nothing is scored twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.scorers.base import Scorer


@dataclass(frozen=True)
class ScoredChunk:
    """Every scorer's view of a chunk of users (rows) over the whole catalogue (columns)."""

    histories: list[np.ndarray]  # item rows per user, oldest first
    scores: dict[str, np.ndarray]  # scorer name → (U, n_items) float32, history at -inf
    ranks: dict[str, np.ndarray]  # scorer name → (U, n_items) int32, 0 = best; history and -inf last
    # Each scorer's own score of the user's history items (what ``scores`` hides), for ranking a
    # backend's list that contains them: name → (U, n_items), equal to ``scores`` elsewhere.
    raw: dict[str, np.ndarray]

    @property
    def n_users(self) -> int:
        return len(self.histories)


def full_ranks(scores: np.ndarray) -> np.ndarray:
    """(U, n) rank of every item per row, 0 = highest score, ties broken by item row (lower first)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (U, n) item rows, best first
    ranks = np.empty_like(order, dtype=np.int32)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1], dtype=np.int32)[None, :], axis=1)
    return ranks


def score_chunk(
    scorers: dict[str, Scorer],
    histories: list[np.ndarray],
    users: np.ndarray | None = None,
    *,
    keep_raw: bool = False,
    n_items: int | None = None,
) -> ScoredChunk:
    """Score ``histories`` with every scorer; ``users`` (training rows) lets scorers use their
    learned user state, otherwise the history is folded in (anonymous sessions).

    ``n_items`` is the catalogue's size when items were added after the scorers were fitted
    (``recsys.live``): a scorer that never saw an item scores it ``-inf`` and ignores it in histories.

    Ranks and scores hide the history, so features do not depend on which candidates are asked
    about; ``keep_raw`` also keeps the history items' own scores (to rank a list that has them).
    """
    scores, ranks, raw = {}, {}, {}
    for name, scorer in scorers.items():
        s = _catalogue_scores(scorer, histories, users, n_items)
        if keep_raw:
            raw[name] = s.copy()
        for r, h in enumerate(histories):
            s[r, h] = -np.inf
        scores[name] = s
        ranks[name] = full_ranks(s)
    return ScoredChunk(histories=histories, scores=scores, ranks=ranks, raw=raw or scores)


def merge_candidates(chunk: ScoredChunk, depth: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The union of each source's ``depth`` best items: (row in chunk, item row), sorted by row then item.

    Items a source scores ``-inf`` (history, never seen) never come from that source.
    """
    pick = np.zeros((chunk.n_users, next(iter(chunk.scores.values())).shape[1]), dtype=bool)
    for name, n in depth.items():
        pick |= (chunk.ranks[name] < n) & np.isfinite(chunk.scores[name])
    rows, items = np.nonzero(pick)
    return rows.astype(np.int64), items.astype(np.int64)


def _catalogue_scores(
    scorer: Scorer, histories: list[np.ndarray], users: np.ndarray | None, n_items: int | None
) -> np.ndarray:
    """(U, n_items) scores; columns past the scorer's own catalogue are ``-inf``."""
    known = scorer.data.n_items
    if users is not None:
        s = scorer.score(users)
    elif n_items is None or n_items == known:
        s = scorer.score_histories(histories)
    else:
        s = scorer.score_histories([h[h < known] for h in histories])
    if n_items is not None and n_items > s.shape[1]:
        s = np.concatenate([s, np.full((s.shape[0], n_items - s.shape[1]), -np.inf, np.float32)], axis=1)
    return s
