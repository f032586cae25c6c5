"""Lexical text match: TF-IDF cosine between the candidate's text and the user's recent items'.

The words two product texts share say things a sentence encoder blurs: a model number, a size, a
product line ("HATCHBOX … 1.75 mm, 1 kg" in another colour), a part that fits the user's tool. Each
item's text (title, category, brand) becomes a sparse vector of its words, weighted by
``1 + log(count)`` times the smoothed inverse document frequency over the catalogue, L2-normalised.
A user's score of an item is the sum of its cosines to their last ``n_recent`` items, the k-th
newest weighted ``decay**k``. Words in more than ``max_df`` of the items (the catalogue's root
category, a ubiquitous brand) are left out: they match everything and cost the most to multiply.

Nothing here reads the interactions: an item with a text scores from the moment it is added
(``with_items``), with the words and weights fitted on the catalogue; a word the fitted catalogue
never had adds nothing until the next training.

On Amazon Scientific's validation split, alone: Recall@10 / NDCG@10 0.1226 / 0.0782 (the last five
items, decay 0.7), against 0.1130 / 0.0703 for zero-shot all-MiniLM-L6-v2 over the last three
(``benchmarks/RESULTS.md``, issue 4).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.errors import ArtifactError, ConfigError
from recsys.scorers.base import Scorer, decayed_profiles

WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, any script


@dataclass(frozen=True)
class LexicalConfig:
    # Chosen on Amazon Scientific's validation split (benchmarks/results/lexical_sweep.json):
    # NDCG@10 0.0782 here; the last item alone 0.0696, three at decay 0.5 0.0767, five at decay 0.8
    # 0.0778, at 1.0 0.0714; max_df 0.1 or 1.0 within 0.0004.
    n_recent: int = 5  # the user's newest items compared
    decay: float = 0.7  # weight of the k-th newest of them: decay ** k (k = 0 for the newest)
    max_df: float = 0.5  # words in more than this share of the items are left out
    lowercase: bool = True

    def __post_init__(self) -> None:
        if self.n_recent < 1:
            raise ConfigError("lexical: n_recent must be at least 1")
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError("lexical: decay must be in (0, 1]")
        if not 0.0 < self.max_df <= 1.0:
            raise ConfigError("lexical: max_df must be in (0, 1]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return WORD.findall(text.lower() if lowercase else text)


def term_counts(
    texts: list[str], vocab: dict[str, int] | None, lowercase: bool
) -> tuple[sp.csr_matrix, dict[str, int]]:
    """(len(texts), |vocab|) word counts; ``vocab`` None builds one from ``texts`` (words in order
    of first appearance), otherwise words outside it are dropped."""
    grow = vocab is None
    words: dict[str, int] = {} if vocab is None else vocab
    indptr, indices = [0], []
    for text in texts:
        for w in tokenize(text or "", lowercase):
            j = words.setdefault(w, len(words)) if grow else words.get(w, -1)
            if j >= 0:
                indices.append(j)
        indptr.append(len(indices))
    counts = sp.csr_matrix(
        (np.ones(len(indices), np.float32), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(texts), len(words)),
    )
    counts.sum_duplicates()
    return counts, words


def weigh(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear TF times IDF, each row scaled to unit length (an empty row stays empty)."""
    tf = counts.copy()
    tf.data = (1.0 + np.log(tf.data)).astype(np.float32)
    weighted = sp.csr_matrix(tf @ sp.diags(idf.astype(np.float32)))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted, dtype=np.float32)


class LexicalScorer(Scorer):
    name = "lexical"

    def __init__(self, config: LexicalConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(LexicalConfig, config, options)
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0, np.float32)
        self.vectors = sp.csr_matrix((0, 0), dtype=np.float32)  # (n_items, |vocab|) unit rows

    def fit(self, data: TrainData) -> LexicalScorer:
        counts, words = term_counts(data.item_text, None, self.config.lowercase)
        n = max(data.n_items, 1)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        keep = df <= self.config.max_df * n
        kept = np.flatnonzero(keep)
        names = np.array(list(words), dtype=object)[kept]
        self.vocab = {str(w): j for j, w in enumerate(names)}
        self.idf = (np.log((1.0 + n) / (1.0 + df[kept])) + 1.0).astype(np.float32)
        self.vectors = weigh(sp.csr_matrix(counts[:, kept]), self.idf)
        self._data = data
        return self

    def item_vectors(self, texts: list[str]) -> sp.csr_matrix:
        """Unit TF-IDF rows of ``texts`` with the fitted words and weights."""
        counts, _ = term_counts(texts, self.vocab, self.config.lowercase)
        return weigh(counts, self.idf)

    def with_items(self, data: TrainData, rows: np.ndarray) -> LexicalScorer:
        """A copy over ``data``'s grown or changed catalogue: ``rows`` (new or edited items)
        vectorised from their text with the fitted words and weights; the rest shared."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        old, n = self.vectors, data.n_items
        grown = sp.vstack([old, sp.csr_matrix((n - old.shape[0], old.shape[1]), dtype=np.float32)])
        keep = np.ones(n, np.float32)
        keep[rows] = 0.0
        # Sparse products, no per-row Python: the kept rows as they were, plus each fresh vector
        # placed at its row (place[r, k] = 1 where r = rows[k]).
        fresh = self.item_vectors([data.item_text[int(r)] for r in rows])
        place = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, np.arange(len(rows)))), shape=(n, len(rows))
        )
        vectors = sp.diags(keep).tocsr() @ grown + place @ fresh
        vectors.eliminate_zeros()
        out = copy.copy(self)
        out.vectors, out._data = sp.csr_matrix(vectors, dtype=np.float32), data
        return out

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._scores([self.data.history(int(u)) for u in users], items)

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        return self._scores(histories, items)

    def _scores(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        cfg, x = self.config, self.vectors
        profiles = decayed_profiles(histories, x.shape[0], cfg.n_recent, cfg.decay) @ x  # (U, |vocab|)
        targets = x if items is None else x[items]
        return np.asarray((profiles @ targets.T).toarray(), dtype=np.float32)

    def get_state(self) -> dict[str, np.ndarray]:
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        x = self.vectors
        return {
            "words": np.array(words, dtype=str),
            "idf": self.idf,
            "data": x.data,
            "indices": x.indices,
            "indptr": x.indptr,
            "shape": np.array(x.shape, np.int64),
        }

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> LexicalScorer:
        shape = tuple(int(v) for v in state["shape"])
        self.vocab = {str(w): j for j, w in enumerate(state["words"].tolist())}
        self.idf = np.asarray(state["idf"], np.float32)
        self.vectors = sp.csr_matrix(
            (np.asarray(state["data"], np.float32), state["indices"], state["indptr"]), shape=shape
        )
        if shape[0] != data.n_items:
            raise ArtifactError(f"lexical: the saved vectors cover {shape[0]} items, the data {data.n_items}")
        self._data = data
        return self
