"""The scorer contract: ``fit`` on training data, then ``score`` users over items, in batches.

Users and items are vocabulary row numbers (see ``recsys.data.vocab``). ``score`` returns a fresh
float32 array of shape (len(users), n_items) — or (len(users), len(items)) when ``items`` is given —
that the caller may modify. Higher is better; ties are broken by the caller, by item row. An item
the scorer cannot recommend at all (a CF model that never saw it) scores ``-inf``; never NaN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.data.train_data import TrainData
from recsys.errors import NotFittedError


class Scorer(ABC):
    """Base class of every scorer."""

    name: ClassVar[str]
    config: Any

    def __init__(self) -> None:
        self._data: TrainData | None = None

    @abstractmethod
    def fit(self, data: TrainData) -> Scorer:
        """Learn from ``data``; returns ``self``."""

    @abstractmethod
    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        """Scores for row-number arrays, already checked."""

    def with_items(self, data: TrainData, rows: np.ndarray) -> Scorer:
        """This scorer over ``data``'s grown or edited catalogue (``recsys.live.upsert_items``),
        ``rows`` the new or changed items. A scorer that reads only interactions has nothing to
        learn from an item's description: it stays as fitted and scores items it never saw
        ``-inf`` (the candidates pad its columns). Scorers that read the text override this."""
        return self

    @property
    def counts_events(self) -> bool:
        """Whether the scores are counts of training events, which grow with the data: the
        ranker's features then put them per 10,000 interactions (``RecommenderConfig.count_features``)."""
        return False

    @property
    def data(self) -> TrainData:
        if self._data is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(train_data) first")
        return self._data

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        data = self.data
        users = np.asarray(users, dtype=np.int64)
        if users.ndim != 1:
            raise ValueError(f"users must be a 1-d array of row numbers, got shape {users.shape}")
        if len(users) and (users.min() < 0 or users.max() >= data.n_users):
            raise IndexError(f"user rows must be in [0, {data.n_users}); map ids through data.users first")
        if items is not None:
            items = np.asarray(items, dtype=np.int64)
            if len(items) and (items.min() < 0 or items.max() >= data.n_items):
                raise IndexError(f"item rows must be in [0, {data.n_items})")
        out = self._score(users, items)
        return np.ascontiguousarray(out, dtype=np.float32)

    def score_histories(self, histories: list[np.ndarray], items: np.ndarray | None = None) -> np.ndarray:
        """Scores for users given only their recent item rows (oldest first): anonymous sessions.

        Same shape and conventions as ``score``; a scorer that needs a learned user state folds the
        history in or raises ``NotImplementedError``.
        """
        data = self.data
        for h in histories:
            if len(h) and (np.min(h) < 0 or np.max(h) >= data.n_items):
                raise IndexError(f"history item rows must be in [0, {data.n_items})")
        if items is not None:
            items = np.asarray(items, dtype=np.int64)
        out = self._score_histories([np.asarray(h, dtype=np.int64) for h in histories], items)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} cannot score a history without a trained user")

    # ----- persistence (artifacts) ---------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (saved with ``np.savez``); the config is saved apart."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> Scorer:
        """Restore ``get_state``'s arrays for ``data`` (the training data they were fitted on)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded")

    def describe(self) -> dict[str, Any]:
        """Name and configuration, for results and artifacts."""
        from dataclasses import asdict, is_dataclass

        cfg = asdict(self.config) if is_dataclass(self.config) and not isinstance(self.config, type) else {}
        return {"name": self.name, "config": cfg}


def history_weights(
    histories: list[np.ndarray], n_recent: int, decay: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last ``n_recent`` items of each history (item rows, oldest first) with weights ``decay**k``
    (k = 0 for the newest). Returns (history index, item row, weight) triplets for sparse profiles.
    """
    rows, cols, vals = [], [], []
    for r, h in enumerate(histories):
        hist = h[-n_recent:][::-1]  # newest first
        rows.append(np.full(len(hist), r))
        cols.append(hist)
        vals.append(decay ** np.arange(len(hist)))
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals).astype(np.float32)


def decayed_profiles(histories: list[np.ndarray], n_items: int, n_recent: int, decay: float) -> sp.csr_matrix:
    """(len(histories), n_items) sparse rows: weight ``decay**k`` on the k-th newest of the last
    ``n_recent`` items of each history (``history_weights`` as a matrix)."""
    rows, cols, vals = history_weights(histories, n_recent, decay)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(histories), n_items))


def grow_rows(values: np.ndarray, n: int, fill: object = 0) -> np.ndarray:
    """``values`` (1-d or rows) extended to ``n`` rows for a grown catalogue, new rows ``fill``."""
    out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


def user_item_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(U, n) float32 ``users @ items.T`` for (U, d) user and (n, d) item vectors, C-ordered.

    The sums run in float64 (``items`` as float64: see ``WideTable``) and are then rounded to
    float32, so a user's scores do not depend on which other users share the call. BLAS chooses its
    kernels by the shapes, and their float32 sums differ in the last bits (on one machine 88% of the
    scores of a user alone differed from the same user's in a batch of 25): two items with equal
    vectors (the same text) then tie in one call and not in the other, their ranks swap, and a
    user's list would depend on the batch. The float64 sums differ by far less than a float32
    step, so they round to the same float32; the cost is about 15% on a chunk of 512 users and
    0.2 ms on one, and the memory of a float64 copy of each item table.

    In float32, OpenBLAS had computed a handful of rows faster as ``items @ users.T``; in float64
    the plain order is as fast or faster at every size measured (1 to 128 users × 4,385 items ×
    384 dimensions, one thread: 0.38 against 0.57 ms for one user, 9.1 against 13.3 ms for 64).
    """
    return (np.asarray(users, dtype=np.float64) @ items.T).astype(np.float32)


class WideTable:
    """A float64 copy of a scorer's float32 item table for ``user_item_scores``: made on first use
    and again whenever the scorer's table is replaced (refit, loaded state, new items), with its
    Gram matrix ``YᵀY`` (for ALS's fold-in) computed once per copy."""

    def __init__(self) -> None:
        self._source: np.ndarray | None = None
        self._wide = np.zeros((0, 0))
        self._gram: np.ndarray | None = None

    def of(self, table: np.ndarray) -> np.ndarray:
        if self._source is not table:
            self._wide, self._source, self._gram = np.asarray(table, dtype=np.float64), table, None
        return self._wide

    def scores(self, table: np.ndarray, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        """``user_item_scores`` of ``users`` against ``table``'s rows ``items`` (None: every row)."""
        wide = self.of(table)
        return user_item_scores(users, wide if items is None else wide[items])

    def gram(self, table: np.ndarray) -> np.ndarray:
        """``YᵀY`` of ``table`` in float64."""
        wide = self.of(table)
        if self._gram is None:
            self._gram = wide.T @ wide
        return self._gram
