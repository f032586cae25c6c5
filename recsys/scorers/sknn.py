"""Session-based nearest neighbours: what users whose histories share a user's recent items went on to.

The user-based counterpart of the item × item models (EASE, seqlinear, co-visitation), in the form
that holds up on short e-commerce sessions (V-SKNN, Ludewig & Jannach 2018): the user's last
``n_recent`` items, the k-th newest weighted ``decay**(k-1)`` and each by its inverse document
frequency (a rare item says more about a shared taste than a bestseller), find the ``neighbours``
training users with the largest overlap, divided by ``|history|**normalize`` so long histories do
not match everyone. An item's score is the summed similarity of the neighbours who have it,
each vote weighted by how near the item lies to where the two histories meet:

    sim(u, v) = Σ_{i ∈ recent(u) ∩ H(v)} decay**(k_u(i) − 1) · idf(i)  /  |H(v)|**normalize
    score(u, j) = Σ_{v ∈ top-k of u, j ∈ H(v)} sim(u, v) · exp(−|pos_v(j) − meet(u, v)| / window)

meet(u, v) is the mean position in H(v) of the shared items, weighted as in the similarity. What a
neighbour met near that point says more about the user's next item than what they met long
before or after (STAN's third weight, Garg et al., SIGIR 2019); ``window = 0`` lets every item of
a neighbour vote in full. A training user is never their own neighbour. Fitting stores nothing
beyond the user × item matrix and the item weights, so an anonymous session is scored the same way.
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
class SessionKNNConfig:
    # Chosen on Amazon Scientific's validation split (benchmarks/results/sknn_sweep.json), without
    # the window: Recall@10 / NDCG@10 0.1366 / 0.0935 here; 50 neighbours 0.1308 / 0.0907, 500
    # 0.1362 / 0.0934; without idf 0.1339 / 0.0913; decay 0.5 0.1284 / 0.0901; normalize 0 or 1
    # 0.0923 / 0.0917 NDCG@10. EASE 0.0901, seqlinear 0.0931.
    neighbours: int = 200  # users whose histories vote
    n_recent: int = 10  # the user's items that find them
    decay: float = 0.8  # weight of the k-th newest of them: decay ** (k - 1)
    idf: bool = True  # weight shared items by log(n_users / users who have them)
    normalize: float = 0.5  # divide an overlap by the neighbour's history length ** normalize
    # 0: every item of a neighbour votes in full. > 0: an item votes exp(−d / window), d its distance
    # in positions from where the neighbour's history meets the user's (the mean position of the
    # shared items, weighted as in the similarity), as STAN's third weight (Garg et al., SIGIR 2019).
    # Validation NDCG@10 at 1 / 3 / 8 / 12 / 20: 0.0891 / 0.0934 / 0.0943 / 0.0944 / 0.0941; off 0.0935.
    window: float = 12.0

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.n_recent < 1:
            raise ConfigError("sknn: neighbours and n_recent must be at least 1")
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError("sknn: decay must be in (0, 1]")
        if not 0.0 <= self.normalize <= 1.0:
            raise ConfigError("sknn: normalize must be in [0, 1]")
        if self.window < 0:
            raise ConfigError("sknn: window must be 0 (off) or positive")


class SessionKNNScorer(Scorer):
    name = "sknn"

    def __init__(self, config: SessionKNNConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(SessionKNNConfig, config, options)
        self.item_weights = np.empty(0, dtype=np.float32)
        self._x = sp.csr_matrix((0, 0), dtype=np.float32)  # (n_users, n_items) binary
        self._xt = sp.csr_matrix((0, 0), dtype=np.float32)  # its transpose, for the overlaps
        self._length_norm = np.empty(0, dtype=np.float32)
        # (n_items, n_users) each item's 1-based position in each history; built only with a window
        self._pos_t = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: TrainData) -> SessionKNNScorer:
        users_per_item = np.asarray((data.matrix > 0).sum(axis=0)).ravel().astype(np.float64)
        if self.config.idf:
            weights = np.log(max(data.n_users, 1) / np.maximum(users_per_item, 1.0))
        else:
            weights = np.ones(data.n_items)
        return self._set(weights.astype(np.float32), data)

    def _set(self, item_weights: np.ndarray, data: TrainData) -> SessionKNNScorer:
        x = sp.csr_matrix(data.matrix, dtype=np.float32, copy=True)
        x.data[:] = 1.0
        self.item_weights = item_weights
        self._x, self._xt = x, sp.csr_matrix(x.T)
        if self.config.window > 0:
            self._pos_t = _positions(data)
        lengths = np.asarray(x.sum(axis=1)).ravel()
        self._length_norm = np.maximum(lengths, 1.0).astype(np.float32) ** -self.config.normalize
        self._data = data
        return self

    def _from_histories(
        self, histories: list[np.ndarray], items: np.ndarray | None, own_rows: np.ndarray | None
    ) -> np.ndarray:
        cfg = self.config
        profiles = decayed_profiles(histories, self.data.n_items, cfg.n_recent, cfg.decay)
        profiles = profiles @ sp.diags(self.item_weights)  # (U, n_items) decayed idf weights
        overlaps = np.asarray((profiles @ self._xt).todense(), dtype=np.float32)  # (U, n_users)
        sims = overlaps * self._length_norm[None, :]
        if own_rows is not None:
            sims[np.arange(len(own_rows)), own_rows] = 0.0  # a user is not their own neighbour
        cut, kept = nearest(sims, min(cfg.neighbours, sims.shape[1]))
        if cfg.window > 0:
            return self._windowed(profiles, overlaps, cut, kept, items)
        rows = np.repeat(np.arange(len(histories)), cut.shape[1])
        neighbours = sp.csr_matrix((kept.ravel(), (rows, cut.ravel())), shape=sims.shape)
        neighbours.eliminate_zeros()
        x = self._x if items is None else self._x[:, items]
        return np.asarray((neighbours @ x).todense(), dtype=np.float32)

    def _windowed(
        self,
        profiles: sp.csr_matrix,
        overlaps: np.ndarray,
        cut: np.ndarray,
        kept: np.ndarray,
        items: np.ndarray | None,
    ) -> np.ndarray:
        """Neighbours' votes (``nearest``'s rows and similarities) weighted by their distance from
        where the histories meet."""
        data, n_items = self.data, self.data.n_items
        n, k = cut.shape
        weighted = np.asarray((profiles @ self._pos_t).todense(), dtype=np.float32)  # Σ w_i · pos_v(i)
        shared = np.take_along_axis(overlaps, cut, axis=1)
        meet = np.take_along_axis(weighted, cut, axis=1) / np.maximum(shared, 1e-12)  # (U, k)
        rows, neighbours = np.repeat(np.arange(n), k), cut.ravel()
        voting = kept.ravel() > 0
        rows, neighbours, sim, meet = (
            rows[voting],
            neighbours[voting],
            kept.ravel()[voting],
            meet.ravel()[voting],
        )
        indptr = data.seq_indptr
        lengths = np.diff(indptr)[neighbours]
        starts = np.repeat(indptr[neighbours], lengths)
        offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # 0-based
        votes = np.repeat(sim, lengths) * np.exp(
            -np.abs(offset + 1 - np.repeat(meet, lengths)) / self.config.window
        )
        keys = np.repeat(rows, lengths) * n_items + data.seq_items[starts + offset]
        out = np.bincount(keys, weights=votes, minlength=n * n_items).reshape(n, n_items).astype(np.float32)
        return out if items is None else out[:, items]

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._from_histories([self.data.history(int(u)) for u in users], items, users)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._from_histories(histories, items, None)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"item_weights": self.item_weights}

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> SessionKNNScorer:
        return self._set(state["item_weights"].astype(np.float32), data)


def nearest(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(U, k) each row's k most similar user rows, most similar first, ties to the lower row (the
    same neighbours whichever way they vote), and (U, k) their similarities."""
    cut = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return cut, np.take_along_axis(sims, cut, axis=1)


def _positions(data: TrainData) -> sp.csr_matrix:
    """(n_items, n_users) the 1-based position of each item in each history (its last, if repeated)."""
    seq, indptr = data.seq_items, data.seq_indptr
    user_of = np.repeat(np.arange(data.n_users), np.diff(indptr))
    position = np.arange(len(seq)) - indptr[user_of] + 1
    keys = user_of.astype(np.int64) * data.n_items + seq
    _, last = np.unique(keys[::-1], return_index=True)
    last = len(keys) - 1 - last
    return sp.csr_matrix(
        (position[last].astype(np.float32), (seq[last], user_of[last])), shape=(data.n_items, data.n_users)
    )
