"""A closed-form linear model of the next item given a user's recent items (in the spirit of SLIST,
Choi et al., WWW 2021).

Every position t ≥ 1 of every training history is one example: its *profile* is the items before
it, the k-th newest weighted ``decay**(k-1)`` (at most ``n_recent``), and its *target* the item at t
(and, with ``n_next`` > 1, the items after it, weighted ``next_decay**j``). With S the profiles, T
the targets and X the binary user × item matrix, the item × item weights are

    B = argmin  α‖T − SB‖² + (1 − α)‖X − XB‖² + λ‖B − βW‖²
      = (αSᵀS + (1 − α)XᵀX + λI)⁻¹ (αSᵀT + (1 − α)XᵀX + λβW),

one dense n_items × n_items solve. W is the text prior (``text_prior`` = β > 0): the cosine between
the items' TF-IDF word vectors (``recsys.scorers.lexical``), zero on the diagonal, and with
``neighbour_prior`` also each item's nearest items in a text model's embeddings. The ridge term
then pulls B toward "items described alike follow each other" instead of toward zero: where the
interactions say much (popular pairs) they decide, where they say little (the long tail, items
with a handful of events) the words do. With β = 0 the model is collaborative alone.

α = 1 is a pure transition model: unlike counts of item → next item (co-visitation), the
regression explains a target by all recent items at once, so an item that follows everything (a
popular one) does not get the credit a specific predecessor earns. A user's scores are their own
profile (same weights, their newest items) times B.
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
class SeqLinearConfig:
    # Chosen on Amazon Scientific's validation split (benchmarks/RESULTS.md, issue 4): Recall@10 /
    # NDCG@10 0.1349 / 0.0931 here, 0.1323 / 0.0925 without the diagonal constraint, 0.1099 /
    # 0.0779 as a pure transition model (alpha 1, 5 items at decay 0.5); EASE 0.1318 / 0.0901.
    l2: float = 100.0
    n_recent: int = 10  # items in a profile
    decay: float = 0.8  # weight of the k-th newest item: decay ** (k - 1)
    n_next: int = 1  # items after a profile that it predicts
    next_decay: float = 0.5  # weight of the j-th of them: next_decay ** (j - 1)
    alpha: float = 0.3  # weight of the sequential term against whole-history consistency
    # diag(B) = 0 (as EASE): an item may not predict itself, so the consistency term cannot be met
    # by copying the profile.
    zero_diagonal: bool = True
    # β: the weight of the text prior W in the ridge term (0: none). Validation NDCG@10 0.0931 at 0,
    # 0.1018 / 0.1059 / 0.1070 / 0.1060 / 0.0996 at 0.01 / 0.02 / 0.03 / 0.04 / 0.1 (Recall@10 0.1349
    # → 0.1588 at 0.03); what counts is λβ (l2 50 at 0.06 and 200 at 0.015 give 0.1066 / 0.1067).
    # Test, reported only: 0.1404 / 0.0972 → 0.1568 / 0.1092 (benchmarks/RESULTS.md, issue 4).
    text_prior: float = 0.03
    # W also holds each item's ``neighbours`` nearest items in the item embeddings of the scorer
    # ``prior_from`` (the fine-tuned encoder), their cosine weighted by ``neighbour_prior`` (0:
    # the words alone): items a text model has learned to place together, where words differ.
    # Given through ``fit(item_embeddings=...)``, as ``recsys.recommender.fit_scorers`` does. Alone on
    # Amazon Scientific's validation split, with the fine-tuned encoder's 20 nearest items and
    # text_prior 0.015: NDCG@10 0.1078 against 0.1070, Recall@50 0.2646 against 0.2578 (test 0.1101
    # against 0.1092); in the hybrid, over run 38's checkpoints, the validation event +0.0001 (95%
    # interval −0.0016 to +0.0019) and one event earlier +0.0008 / −0.0024: off by default
    # (benchmarks/RESULTS.md, issue 4).
    neighbour_prior: float = 0.0
    neighbours: int = 20
    prior_from: str = "encoder"
    max_items: int = 30_000  # the dense solve needs n_items² floats
    # Score from each history without its last ``skip_last`` items (0: the whole history): where
    # the user was headed before their latest events, a second view of the same model for the
    # ranker beside the plain one. Fitting is unchanged.
    skip_last: int = 0

    def __post_init__(self) -> None:
        if self.l2 <= 0:
            raise ConfigError("seqlinear: l2 must be positive")
        if self.n_recent < 1 or self.n_next < 1:
            raise ConfigError("seqlinear: n_recent and n_next must be at least 1")
        if not (0.0 < self.decay <= 1.0 and 0.0 < self.next_decay <= 1.0):
            raise ConfigError("seqlinear: decay and next_decay must be in (0, 1]")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("seqlinear: alpha must be in [0, 1]")
        if self.text_prior < 0:
            raise ConfigError("seqlinear: text_prior must be 0 (none) or positive")
        if self.neighbour_prior < 0 or self.neighbours < 1:
            raise ConfigError("seqlinear: neighbour_prior must be >= 0 and neighbours at least 1")
        if self.neighbour_prior > 0 and self.text_prior == 0:
            raise ConfigError("seqlinear: neighbour_prior is part of the text prior; set text_prior > 0")
        if self.skip_last < 0:
            raise ConfigError("seqlinear: skip_last must be 0 (the whole history) or positive")


def profiles_and_targets(data: TrainData, cfg: SeqLinearConfig) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(S, T): one row per history position with the decayed items before it and after it (from it)."""
    seq, indptr, n = data.seq_items, data.seq_indptr, data.n_items
    start = np.repeat(indptr[:-1], np.diff(indptr))  # each position's user start
    stop = np.repeat(indptr[1:], np.diff(indptr))
    g = np.arange(len(seq))
    has_past = g > start
    rows, cols, vals = [], [], []
    for k in range(1, cfg.n_recent + 1):
        ok = has_past & (g - k >= start)
        rows.append(g[ok])
        cols.append(seq[g[ok] - k])
        vals.append(np.full(int(ok.sum()), cfg.decay ** (k - 1), np.float64))
    s = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(seq), n)
    )
    rows, cols, vals = [], [], []
    for j in range(cfg.n_next):
        ok = has_past & (g + j < stop)
        rows.append(g[ok])
        cols.append(seq[g[ok] + j])
        vals.append(np.full(int(ok.sum()), cfg.next_decay**j, np.float64))
    t = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(seq), n)
    )
    return s, t


def text_similarity(data: TrainData) -> np.ndarray:
    """(n_items, n_items) cosine of the items' TF-IDF word vectors, zero on the diagonal."""
    from recsys.scorers.lexical import LexicalScorer

    words = LexicalScorer().fit(data).vectors
    similarity = (words @ words.T).toarray().astype(np.float64)
    np.fill_diagonal(similarity, 0.0)
    return similarity


def neighbour_similarity(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(n_items, n_items) each item's ``k`` nearest items by cosine of ``embeddings`` (negative
    cosines as 0), every other entry and the diagonal zero."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    cosine = (unit @ unit.T).astype(np.float64)
    np.fill_diagonal(cosine, -np.inf)
    k = min(k, len(cosine) - 1)
    out = np.zeros_like(cosine)
    if k < 1:
        return out
    rows = np.arange(len(cosine))[:, None]
    nearest = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
    out[rows, nearest] = np.maximum(cosine[rows, nearest], 0.0)
    return out


class SeqLinearScorer(Scorer):
    name = "seqlinear"

    def __init__(self, config: SeqLinearConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(SeqLinearConfig, config, options)
        self.weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: TrainData, *, item_embeddings: np.ndarray | None = None) -> SeqLinearScorer:
        """``item_embeddings``: (n_items, d) those of the scorer ``prior_from``, for
        ``neighbour_prior``."""
        cfg = self.config
        if cfg.neighbour_prior > 0 and (item_embeddings is None or len(item_embeddings) != data.n_items):
            raise ConfigError(
                f"seqlinear: neighbour_prior needs the item embeddings of the scorer {cfg.prior_from!r}, "
                f"one row per item ({data.n_items}); configure that scorer beside it"
            )
        if data.n_items > cfg.max_items:
            raise ConfigError(
                f"seqlinear: {data.n_items} items exceed max_items={cfg.max_items} (a dense n×n solve)"
            )
        s, t = profiles_and_targets(data, cfg)
        lhs = cfg.alpha * (s.T @ s).toarray()
        rhs = cfg.alpha * (s.T @ t).toarray()
        if cfg.alpha < 1.0:
            x = data.matrix.astype(np.float64)
            xtx = (x.T @ x).toarray()
            lhs += (1.0 - cfg.alpha) * xtx
            rhs += (1.0 - cfg.alpha) * xtx
        lhs[np.diag_indices_from(lhs)] += cfg.l2
        if cfg.text_prior > 0:
            prior = text_similarity(data)
            if cfg.neighbour_prior > 0:
                assert item_embeddings is not None
                prior += cfg.neighbour_prior * neighbour_similarity(item_embeddings, cfg.neighbours)
            rhs += cfg.l2 * cfg.text_prior * prior
        if cfg.zero_diagonal:
            # Lagrange multipliers γ for diag(B) = 0: B = P(R − diag(γ)), γ_i = (PR)_ii / P_ii.
            p = np.linalg.inv(lhs)
            b = p @ rhs
            b -= p * (np.diag(b) / np.diag(p))[None, :]
            b[np.diag_indices_from(b)] = 0.0
        else:
            b = np.linalg.solve(lhs, rhs)
        self.weights = b.astype(np.float32)
        self._data = data
        return self

    def _from_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        if self.config.skip_last:
            histories = [h[: max(len(h) - self.config.skip_last, 0)] for h in histories]
        profiles = decayed_profiles(histories, self.data.n_items, self.config.n_recent, self.config.decay)
        weights = self.weights if items is None else self.weights[:, items]
        return np.asarray(profiles @ weights)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._from_histories([self.data.history(int(u)) for u in users], items)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._from_histories(histories, items)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights}

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> SeqLinearScorer:
        self.weights, self._data = state["weights"].astype(np.float32), data
        return self
