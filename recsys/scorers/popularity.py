"""Most popular items: the same list for everyone, the floor every other scorer must clear."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.scorers.base import Scorer


@dataclass(frozen=True)
class PopularityConfig:
    # Count distinct users per item instead of all interactions (repeats then count once).
    distinct_users: bool = False


class PopularityScorer(Scorer):
    name = "popularity"

    def __init__(self, config: PopularityConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(PopularityConfig, config, options)
        self.counts = np.empty(0, dtype=np.float32)

    @property
    def counts_events(self) -> bool:
        return True

    def fit(self, data: TrainData) -> PopularityScorer:
        if self.config.distinct_users:
            self.counts = np.asarray((data.matrix > 0).sum(axis=0)).ravel().astype(np.float32)
        else:
            self.counts = data.item_counts.astype(np.float32)
        self._data = data
        return self

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        row = self.counts if items is None else self.counts[items]
        return np.tile(row, (len(users), 1))

    def get_state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> PopularityScorer:
        self.counts, self._data = state["counts"].astype(np.float32), data
        return self

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._score(np.zeros(len(histories), dtype=np.int64), items)
