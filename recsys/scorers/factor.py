"""Shared scoring for matrix-factorisation scorers: score = user factors · item factors."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from recsys.data.train_data import TrainData
from recsys.scorers.base import Scorer, WideTable


class FactorScorer(Scorer):
    """A scorer whose state is user and item factor matrices learned by the ``implicit`` library.

    Items without a training interaction have no learned factors: they score ``-inf`` (cannot be
    recommended), not an arbitrary dot product with their random initial vectors.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    unseen: np.ndarray

    def __init__(self) -> None:
        super().__init__()
        self._wide = WideTable()  # item_factors in float64, for user_item_scores

    def _make_model(self) -> Any:
        raise NotImplementedError

    def fit(self, data: TrainData) -> FactorScorer:
        model = self._make_model()
        # implicit runs its own threads; a multi-threaded BLAS underneath oversubscribes the cores.
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(self._fit_matrix(data), show_progress=bool(os.environ.get("RECSYS_PROGRESS")))
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.unseen = np.flatnonzero(data.item_counts == 0)
        self._data = data
        return self

    def _fit_matrix(self, data: TrainData) -> Any:
        return data.matrix

    def get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors, "unseen": self.unseen}

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> FactorScorer:
        self.user_factors = np.ascontiguousarray(state["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(state["item_factors"], dtype=np.float32)
        self.unseen = state["unseen"].astype(np.int64)
        self._data = data
        return self

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """User factors for histories the model was not trained on: (len(histories), factors)."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold in a new history")

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._from_factors(self.user_factors[users], items)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._from_factors(self.fold_in(histories), items)

    def _from_factors(self, user_f: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        scores = self._wide.scores(self.item_factors, user_f, items)
        if len(self.unseen):
            unseen = self.unseen if items is None else np.flatnonzero(np.isin(items, self.unseen))
            scores[:, unseen] = -np.inf
        return scores
