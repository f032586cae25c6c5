"""Co-visitation: what users met right after (and near) the items a user met last.

Two sparse item × item matrices from the training histories: transitions (item → the next item)
and, optionally, co-occurrence within a window of positions, in both directions. A user's score is
a recency-weighted sum of the rows of their last ``n_recent`` items: weight ``decay**k`` for the
k-th newest. Scoring is a sparse profile × sparse matrix product per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.scorers.base import Scorer, decayed_profiles


@dataclass(frozen=True)
class CovisitConfig:
    n_recent: int = 5
    decay: float = 0.5
    transition_weight: float = 1.0
    cooccurrence_weight: float = 0.0
    window: int = 3  # co-occurrence: pairs at most this many positions apart
    normalize: bool = False  # divide each row by its total, turning counts into next-item rates
    # Break ties (most often: items no recent item leads to, all at 0) by popularity, so the tail of
    # the list is the most popular items rather than the lowest item rows.
    popularity_tiebreak: bool = True

    def __post_init__(self) -> None:
        if self.n_recent < 1 or self.window < 1:
            raise ConfigError("covisit: n_recent and window must be at least 1")
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError("covisit: decay must be in (0, 1]")


def transition_pairs(data: TrainData, max_gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (earlier item, later item, gap) pairs at most ``max_gap`` positions apart within a user."""
    seq, indptr = data.seq_items, data.seq_indptr
    user_of = np.repeat(np.arange(data.n_users), np.diff(indptr))
    src, dst, gaps = [], [], []
    for gap in range(1, max_gap + 1):
        same = user_of[:-gap] == user_of[gap:]
        src.append(seq[:-gap][same])
        dst.append(seq[gap:][same])
        gaps.append(np.full(int(same.sum()), gap))
    return np.concatenate(src), np.concatenate(dst), np.concatenate(gaps)


class CovisitScorer(Scorer):
    name = "covisit"

    def __init__(self, config: CovisitConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(CovisitConfig, config, options)
        self.matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self.tiebreak: np.ndarray | None = None

    @property
    def counts_events(self) -> bool:
        return not self.config.normalize  # rates, once normalised

    def fit(self, data: TrainData) -> CovisitScorer:
        cfg, n = self.config, data.n_items
        max_gap = cfg.window if cfg.cooccurrence_weight else 1
        src, dst, gap = transition_pairs(data, max_gap)
        nxt = gap == 1
        trans = sp.csr_matrix((np.ones(int(nxt.sum()), np.float32), (src[nxt], dst[nxt])), shape=(n, n))
        matrix = cfg.transition_weight * trans
        if cfg.cooccurrence_weight:
            both_src, both_dst = np.concatenate([src, dst]), np.concatenate([dst, src])
            w = np.concatenate([1.0 / gap, 1.0 / gap]).astype(np.float32)  # nearer pairs count more
            cooc = sp.csr_matrix((w, (both_src, both_dst)), shape=(n, n))
            cooc.setdiag(0)
            matrix = matrix + cfg.cooccurrence_weight * cooc
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if cfg.normalize:
            totals = np.asarray(matrix.sum(axis=1)).ravel()
            matrix = sp.diags(1.0 / np.maximum(totals, 1e-12)).astype(np.float32) @ matrix
        matrix.eliminate_zeros()
        self.matrix = matrix.tocsr()
        pop = data.item_counts.astype(np.float32)
        # Scaled far below one count (the smallest step between co-visitation scores of 1, 0.5, ...):
        # it reorders only equal scores.
        self.tiebreak = (1e-6 * pop / max(float(pop.max()), 1.0)) if cfg.popularity_tiebreak else None
        self._data = data
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        m = self.matrix
        state = {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape)}
        if self.tiebreak is not None:
            state["tiebreak"] = self.tiebreak
        return state

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> CovisitScorer:
        shape = tuple(int(x) for x in state["shape"])
        self.matrix = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
        self.tiebreak = state.get("tiebreak")
        self._data = data
        return self

    def profiles(self, users: np.ndarray) -> sp.csr_matrix:
        """Recency-weighted indicator rows of the users' last items: (len(users), n_items)."""
        histories = [self.data.history(int(u)) for u in users]
        return decayed_profiles(histories, self.data.n_items, self.config.n_recent, self.config.decay)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._from_profiles(self.profiles(users), items)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        profiles = decayed_profiles(histories, self.data.n_items, self.config.n_recent, self.config.decay)
        return self._from_profiles(profiles, items)

    def _from_profiles(self, profiles: sp.csr_matrix, items: np.ndarray | None) -> np.ndarray:
        matrix = self.matrix if items is None else self.matrix[:, items]
        scores = (profiles @ matrix).toarray()
        if self.tiebreak is not None:
            scores += self.tiebreak if items is None else self.tiebreak[items]
        return scores
