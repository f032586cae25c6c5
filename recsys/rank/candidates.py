"""Candidate generation: each source's top items per user, merged, with every source's rank kept.

A source is a fitted scorer. For a chunk of users every source scores the whole catalogue once;
items in the user's history (and items a source cannot recommend, scored ``-inf``) are dropped;
each source contributes its ``depth`` best items. The union, one row per (user, item), keeps each
source's rank of the item over the catalogue (so a feature can say "ALS rank 3" even when the item
came from co-visitation). The same score matrices then feed the features, so nothing is scored twice.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from recsys.scorers.base import Scorer


@dataclass(frozen=True)
class ScoredChunk:
    """Every scorer's view of a chunk of users (rows) over the whole catalogue (columns).

    A rank is an item's place in its row, 0 = highest score, ties broken by item row (lower
    first); history items and items a scorer cannot recommend (``-inf``) come last. Ranks are
    computed for the pairs asked about (``rank_of``) from each row's sorted scores, not for the
    whole catalogue: a request needs a few hundred of them per scorer, not thousands.
    """

    histories: list[np.ndarray]  # item rows per user, oldest first
    scores: dict[str, np.ndarray]  # scorer name → (U, n_items) float32, history at -inf
    # Each scorer's own score of the user's history items (what ``scores`` hides), for ranking a
    # backend's list that contains them: name → (U, n_items), equal to ``scores`` elsewhere.
    raw: dict[str, np.ndarray]
    # Scorers whose scores count training events (``Scorer.counts_events``): features rescale them.
    counting: frozenset[str] = frozenset()
    _sorted: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.histories)

    def sorted_scores(self, name: str) -> np.ndarray:
        """(U, n_items) each row's scores in ascending order (computed once per scorer)."""
        if name not in self._sorted:
            self._sorted[name] = np.sort(self.scores[name], axis=1)
        return self._sorted[name]

    def rank_of(self, name: str, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(P,) int32 rank of ``items[p]`` in row ``rows[p]``; equal to ``full_ranks`` there."""
        return pair_ranks(self.scores[name], self.sorted_scores(name), rows, items)

    def top(self, name: str, n: int) -> np.ndarray:
        """(U, n_items) bool: the items of rank < ``n`` that the scorer can recommend (finite)."""
        s = self.scores[name]
        n = min(n, s.shape[1])
        if n <= 0 or s.shape[0] == 0:
            return np.zeros(s.shape, dtype=bool)
        threshold = self.sorted_scores(name)[:, s.shape[1] - n][:, None]  # the n-th highest score
        above = s > threshold
        tied = s == threshold
        room = n - above.sum(axis=1, keepdims=True)  # the lowest item rows among ties fill it
        return (above | (tied & (np.cumsum(tied, axis=1) <= room))) & np.isfinite(s)


def full_ranks(scores: np.ndarray) -> np.ndarray:
    """(U, n) rank of every item per row, 0 = highest score, ties broken by item row (lower first)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (U, n) item rows, best first
    ranks = np.empty_like(order, dtype=np.int32)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1], dtype=np.int32)[None, :], axis=1)
    return ranks


# Largest (shared values × items) compared as one table in ``_ties_before``; above it, binary search.
TIE_TABLE_MAX = 1 << 19


def pair_ranks(scores: np.ndarray, ascending: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``full_ranks(scores)[rows, items]`` from each row's sorted scores (``ascending``).

    An item's rank is the number of higher scores plus the number of equal scores at lower item
    rows. The first comes from a binary search in the sorted row; the second is zero unless the
    score is shared, and is counted exactly for those pairs (one pass over the row per tied value).
    """
    rows, items = np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.int64)
    if not len(rows):
        return out.astype(np.int32)
    n = scores.shape[1]
    values = scores[rows, items]
    tied = np.zeros(len(rows), dtype=bool)
    for idx in row_groups(rows):
        row = ascending[rows[idx[0]]]
        lo = np.searchsorted(row, values[idx], side="left")  # the first copy of the value
        shared = row[np.minimum(lo + 1, n - 1)] == values[idx]  # a second copy follows it
        shared &= lo + 1 < n
        hi = lo + 1  # one past the last copy: counted again only where the value is shared
        if shared.any():
            hi[shared] = np.searchsorted(row, values[idx[shared]], side="right")
        out[idx] = n - hi
        tied[idx] = shared
    if tied.any():
        pairs = np.flatnonzero(tied)
        for r in np.unique(rows[pairs]):
            out[pairs[rows[pairs] == r]] += _ties_before(scores[r], items, values, pairs[rows[pairs] == r])
    return out.astype(np.int32)


def row_groups(rows: np.ndarray) -> list[np.ndarray]:
    """Positions of ``rows`` grouped by value (ascending), each group in its original order."""
    order = np.argsort(rows, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(rows[order])) + 1, len(order)]
    return [order[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _ties_before(row: np.ndarray, items: np.ndarray, values: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """For ``pairs`` of one row: how many items at a lower item row share the pair's score.

    Every item whose score is one of the pairs' values gets the key (value code, item row); in the
    sorted keys, a pair's count is its position within its value's block.
    """
    n = len(row)
    shared = np.unique(values[pairs])  # ascending
    if len(shared) * n <= TIE_TABLE_MAX:
        # Few shared values (the usual case): one comparison per (value, item) lists the keys in
        # order, cheaper than a binary search per item and a sort.
        keys = np.flatnonzero(shared[:, None] == row[None, :])
    else:
        code = np.minimum(np.searchsorted(shared, row), len(shared) - 1)
        members = np.flatnonzero(shared[code] == row)
        keys = np.sort(code[members] * n + members)
    pair_code = np.searchsorted(shared, values[pairs])
    block = np.searchsorted(keys, pair_code * n)
    return np.searchsorted(keys, pair_code * n + items[pairs]) - block


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

    Scores hide the history, so features do not depend on which candidates are asked about;
    ``keep_raw`` also keeps the history items' own scores (to rank a list that has them).
    """
    scores, raw = {}, {}
    for name, scorer in scorers.items():
        s = _catalogue_scores(scorer, histories, users, n_items)
        if keep_raw:
            raw[name] = s.copy()
        for r, h in enumerate(histories):
            s[r, h] = -np.inf
        scores[name] = s
    counting = frozenset(name for name, scorer in scorers.items() if scorer.counts_events)
    return ScoredChunk(histories=histories, scores=scores, raw=raw or scores, counting=counting)


def merge_candidates(
    chunk: ScoredChunk, depth: dict[str, int], cold: dict[str, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The union of each source's ``depth`` best items: (row in chunk, item row), sorted by row then item.
    Rows with an empty history also get each ``cold`` source's best items.

    Items a source scores ``-inf`` (history, never seen) never come from that source.
    """
    pick = np.zeros((chunk.n_users, next(iter(chunk.scores.values())).shape[1]), dtype=bool)
    for name, n in depth.items():
        pick |= chunk.top(name, n)
    empty = np.array([len(h) == 0 for h in chunk.histories], dtype=bool)
    if cold and empty.any():
        for name, n in cold.items():
            pick[empty] |= chunk.top(name, n)[empty]
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
