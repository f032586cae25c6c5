"""The ``Recommender``: candidates → features → LambdaRank → rules → top-K, with reasons.

One object, three callers: serving (per request), batch scoring (per chunk) and evaluation all call
``recommend_rows`` underneath, so offline metrics describe what is served.

- ``recommend(user_ids, k, filters)``: known users (their training histories); an unknown id is
  treated as an anonymous user with no history (popular items).
- ``recommend_session(item_ids, k, filters)``: an anonymous session given only recent item ids;
  scorers that need a trained user fold the history in (ALS) or work from it directly.
- ``rank(user_id, candidate_ids)``: a backend's own list, ordered by the same model.

``recsys.rank.training`` learns the ranker from the validation targets (features from the histories
before them) and refits the scorers on the serving data. ``save``/``load`` use one folder with a
manifest (versions, configs, data fingerprint); see ``recsys.artifacts``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.rank.candidates import ScoredChunk, full_ranks, merge_candidates, score_chunk
from recsys.rank.features import COUNT_FEATURES, ItemSide, build_features
from recsys.rank.ranker import Ranker, RankerConfig
from recsys.rank.reasons import explain, short_title
from recsys.rank.rules import Filters, apply_rules
from recsys.scorers import build_scorer
from recsys.scorers.base import Scorer
from recsys.scorers.seqlinear import SeqLinearScorer
from recsys.scorers.text import TextScorer

log = logging.getLogger(__name__)


def _default_scorers() -> dict[str, dict[str, Any]]:
    return {
        "als": {"model": "als"},
        "ease": {"model": "ease"},
        # The next item from the decayed recent items, beside whole-history consistency: the best
        # single scorer on Amazon Scientific's validation split (benchmarks/RESULTS.md, issue 4).
        "seqlinear": {"model": "seqlinear"},
        "covisit": {"model": "covisit"},
        # Symmetric co-occurrence within one position: the strongest co-visitation variant measured.
        "cooc": {"model": "covisit", "cooccurrence_weight": 1.0, "window": 1},
        "text": {"model": "text", "n_recent": 1},
        "popularity": {"model": "popularity"},
    }


def _default_candidates() -> dict[str, int]:
    return {
        "als": 100,
        "ease": 100,
        "seqlinear": 100,
        "covisit": 50,
        "cooc": 50,
        "text": 50,
    }


def _default_cold_candidates() -> dict[str, int]:
    return {"popularity": 20}


@dataclass(frozen=True)
class RecommenderConfig:
    # Scorers by feature name: {"model": registry name, **its options}.
    scorers: dict[str, dict[str, Any]] = field(default_factory=_default_scorers)
    # Candidate sources: scorer name → how many of its best items enter the candidate set.
    candidates: dict[str, int] = field(default_factory=_default_candidates)
    # Sources whose best items become candidates only for a user with no history (an anonymous
    # visitor, an unknown id), beside the sources above: the popular items, the one list that needs
    # none. For everyone else the same 20 items in every list cost: on Amazon Scientific, over run
    # 27's checkpoints, without them NDCG@10 of the validation event +0.0018 (95% interval +0.0004
    # to +0.0034), test +0.0011 (+0.0003 to +0.0020) (benchmarks/RESULTS.md, issue 4). A source
    # listed in both is a candidate source for every user.
    cold_candidates: dict[str, int] = field(default_factory=_default_cold_candidates)
    ranker: dict[str, Any] = field(default_factory=dict)  # RankerConfig options
    # The text scorer whose item embeddings feed the similarity features (and the reasons).
    embeddings_from: str = "text"
    # Labelled events per user for the ranker: fold 0 is the validation target, fold f the event f
    # places before it (scorers refitted on the history before each); more folds, more training
    # queries. Leave-one-out only: a temporal split uses its validation window alone.
    label_folds: int = 2
    # The labelled users in this many groups, each group's features from scorers fitted on its own
    # histories before the labels and on every other user's history but the last event: the
    # amount of data the scorers have at test time, without the label. 1: every user's features
    # from scorers fitted on all histories before the labels. Leave-one-out only. Measured lower on
    # Amazon Scientific's validation event (4 groups: NDCG@10 −0.0011, benchmarks/label_groups.py):
    # the other users' later events tell the scorers what sold around the label's time, which the
    # scorers at test time cannot know, so the default keeps every history cut at the same place.
    label_groups: int = 1
    split_kind: str = "auto"  # how labels are held out: auto | leave-one-out | temporal
    # Users whose labels train the ranker: 0 = every target user; else a seeded sample of this many
    # (a large shop's ranker learns as well from 50,000 users as from millions, in a fraction of the time).
    label_users: int = 0
    # How counts enter the features: per 10,000 training interactions ("per_10k"), so a count
    # means the same on a label fold's shorter histories as on the test split's and the serving
    # data, or as they are ("raw"; artifacts written before this option).
    count_features: str = "per_10k"
    # Features over the user's whole history, beside those over their last five items: the
    # candidate's text and factor similarity to the nearest history item and to the history's mean,
    # and the transitions into and out of it from every history item (``HISTORY_FEATURES``). Off by
    # default: on Amazon Scientific validation does not choose them (the validation event +0.0008,
    # 95% interval −0.0007 to +0.0023, over run 36's checkpoints; one event earlier, that event
    # with every scorer fitted before it, −0.0001, −0.0013 to +0.0010, over run 38's), though the
    # test gave +0.0016 (+0.0006 to +0.0026); and a served request costs a third more, the ranker
    # growing larger trees (p50 24.8 against 17.3 ms) (benchmarks/RESULTS.md, issue 4).
    history_features: bool = False
    chunk_size: int = 512

    def __post_init__(self) -> None:
        for name, spec in self.scorers.items():
            if "model" not in spec:
                raise ConfigError(f"scorer {name!r} needs a 'model' (one of the registry names)")
        unknown = [s for s in self.candidates if s not in self.scorers]
        if unknown or not self.candidates:
            raise ConfigError(f"candidate sources {unknown} are not among the scorers {list(self.scorers)}")
        unknown = [s for s in self.cold_candidates if s not in self.scorers]
        if unknown:
            raise ConfigError(
                f"cold_candidates sources {unknown} are not among the scorers {list(self.scorers)}"
                " (cold_candidates = {} for none)"
            )
        bad = {
            s: n
            for s, n in {**self.candidates, **self.cold_candidates}.items()
            if not isinstance(n, int) or n < 0
        }
        if bad:
            raise ConfigError(f"candidate depths must be whole numbers >= 0, not {bad}")
        if self.scorers.get(self.embeddings_from, {}).get("model") not in ("text", "encoder"):
            raise ConfigError(f"embeddings_from={self.embeddings_from!r} must name a text or encoder scorer")
        for name, spec in self.scorers.items():
            source = embeddings_needed(spec)
            if source is not None and self.scorers.get(source, {}).get("model") not in ("text", "encoder"):
                raise ConfigError(
                    f"scorer {name!r}: prior_from={source!r} must name a text or encoder scorer"
                    f" among {list(self.scorers)}"
                )
        if self.count_features not in COUNT_FEATURES:
            valid = ", ".join(COUNT_FEATURES)
            raise ConfigError(f"count_features must be one of {valid}, not {self.count_features!r}")
        if self.chunk_size < 1 or self.label_folds < 1 or self.label_groups < 1 or self.label_users < 0:
            raise ConfigError(
                "chunk_size, label_folds and label_groups must be at least 1, label_users at least 0"
            )
        self.ranker_config()

    def ranker_config(self) -> RankerConfig:
        return make_config(RankerConfig, None, self.ranker)


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reasons: list[str]


def embeddings_needed(spec: dict[str, Any]) -> str | None:
    """The scorer whose item embeddings a scorer's fit needs (seqlinear's ``neighbour_prior``)."""
    if spec.get("model") == "seqlinear" and spec.get("neighbour_prior"):
        return str(spec.get("prior_from", "encoder"))
    return None


def fit_scorers(config: RecommenderConfig, data: TrainData, progress: bool = False) -> dict[str, Scorer]:
    """Every scorer fitted on ``data``, those that need another's item embeddings after it."""
    scorers: dict[str, Scorer] = {}
    for name in sorted(config.scorers, key=lambda n: embeddings_needed(config.scorers[n]) is not None):
        spec = config.scorers[name]
        t0 = time.perf_counter()
        options = {k: v for k, v in spec.items() if k != "model"}
        scorer = build_scorer(spec["model"], options)
        source = embeddings_needed(spec)
        if source is None:
            scorers[name] = scorer.fit(data)
        else:
            # RecommenderConfig checked that only seqlinear asks, and for a text scorer's vectors.
            text = scorers[source]
            if not isinstance(scorer, SeqLinearScorer) or not isinstance(text, TextScorer):
                raise ConfigError(
                    f"scorer {name!r}: prior_from={source!r} must name a text or encoder scorer"
                )
            scorers[name] = scorer.fit(data, item_embeddings=text.item_embeddings)
        log.info("fitted %s in %.1fs", name, time.perf_counter() - t0)
    return {name: scorers[name] for name in config.scorers}


class Recommender:
    """Fitted scorers, item statistics and the ranker, over one catalogue and set of histories."""

    def __init__(
        self,
        config: RecommenderConfig,
        data: TrainData,
        scorers: dict[str, Scorer],
        ranker: Ranker,
        side: ItemSide | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.scorers = scorers
        self.ranker = ranker
        self.side = side or ItemSide.from_scorers(
            data, scorers, config.embeddings_from, config.count_features
        )
        self._titles = _titles(data.item_frame)

    def refit(self, data: TrainData) -> Recommender:
        """The same configuration and ranker with every scorer refitted on ``data``."""
        return Recommender(self.config, data, fit_scorers(self.config, data), self.ranker)

    # ----- the one code path ------------------------------------------------------------------
    def features(
        self, histories: list[np.ndarray], users: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> tuple[ScoredChunk, pl.DataFrame]:
        """Candidate (or given) items with their features for one chunk; ``row`` indexes the chunk."""
        chunk = score_chunk(
            self.scorers, histories, users, keep_raw=items is not None, n_items=self.data.n_items
        )
        if items is None:
            rows, cand = merge_candidates(chunk, self.config.candidates, self.config.cold_candidates)
        else:
            rows, cand = np.zeros(len(items), dtype=np.int64), np.asarray(items, dtype=np.int64)
        return chunk, build_features(
            chunk, rows, cand, self.side, self.config.candidates, self.config.history_features
        )

    def score_frame(self, frame: pl.DataFrame, ranking: str = "hybrid") -> pl.DataFrame:
        """``frame`` with a ``score``: the ranker's (``ranking="hybrid"``), or one scorer's own
        score alone (``ranking`` = its name; an A/B variant such as ALS-only). The candidates hold
        each source's top N, so a scorer's top ``k`` (k ≤ N) is the same as over the whole catalogue."""
        return self._score_frame(frame, ranking)[0]

    def _score_frame(self, frame: pl.DataFrame, ranking: str) -> tuple[pl.DataFrame, np.ndarray | None]:
        """``score_frame`` and, for the hybrid, the ranker's feature matrix, with a ``_pos`` column
        that gives each row's place in it (so reasons need not convert the frame again)."""
        if ranking == "hybrid":
            x = self.ranker.matrix(frame)
            return frame.hstack(
                [
                    pl.Series("score", self.ranker.predict_array(x)),
                    pl.Series("_pos", np.arange(frame.height, dtype=np.int64)),
                ]
            ), x
        column = f"{ranking}_score"
        if column not in frame.columns:
            raise ConfigError(f"ranking {ranking!r} is not 'hybrid' nor a scorer ({', '.join(self.scorers)})")
        return frame.with_columns(
            score=pl.col(column).fill_nan(None).fill_null(float("-inf")).cast(pl.Float64)
        ), None

    def recommend_rows(
        self,
        histories: list[np.ndarray],
        users: np.ndarray | None,
        k: int,
        filters: Filters | None = None,
        *,
        with_reasons: bool = True,
        ranking: str = "hybrid",
    ) -> list[list[Recommendation]]:
        """Top-``k`` per history (``users``: their training rows, or None for anonymous sessions);
        ``ranking`` as in ``score_frame``."""
        filters = filters or Filters()
        out: list[list[Recommendation]] = []
        for s in range(0, len(histories), self.config.chunk_size):
            hist = histories[s : s + self.config.chunk_size]
            _, frame = self.features(hist, None if users is None else users[s : s + len(hist)])
            scored, x = self._score_frame(frame, ranking)
            picked = apply_rules(scored, self.side, self.data, hist, filters, k)
            out.extend(self._to_recommendations(picked, hist, with_reasons, scored, x))
        return out

    def _to_recommendations(
        self,
        picked: pl.DataFrame,
        histories: list[np.ndarray],
        with_reasons: bool,
        candidates: pl.DataFrame,
        x: np.ndarray | None = None,
    ) -> list[list[Recommendation]]:
        """``picked`` rows as recommendations; reasons compare each with the ``candidates`` of its
        row (``x``: the candidates' feature matrix, when the ranker computed it)."""
        reasons = (
            explain(self, picked, histories, candidates, x)
            if with_reasons and picked.height
            else [[]] * picked.height
        )
        lists: list[list[Recommendation]] = [[] for _ in histories]
        ids = self.data.items.ids
        columns = (picked["row"].to_list(), picked["item"].to_list(), picked["score"].to_list())
        for (row, item, score), why in zip(zip(*columns, strict=True), reasons, strict=True):
            lists[row].append(Recommendation(str(ids[item]), float(score), why))
        return lists

    # ----- public API -------------------------------------------------------------------------
    def recommend(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        filters: Filters | None = None,
        *,
        with_reasons: bool = True,
    ) -> list[list[Recommendation]]:
        """Top-``k`` for each user id; an unknown user gets the anonymous (empty-history) list."""
        _check_k(k)
        rows = self.data.users.index(list(user_ids))  # a few ids: a dict lookup, not a join
        known = rows >= 0
        results: list[list[Recommendation]] = [[] for _ in user_ids]
        if known.any():
            kr = rows[known]
            lists = self.recommend_rows(
                [self.data.history(int(u)) for u in kr], kr, k, filters, with_reasons=with_reasons
            )
            for pos, lst in zip(np.flatnonzero(known), lists, strict=True):
                results[pos] = lst
        if (~known).any():
            anon = self.recommend_rows([np.zeros(0, np.int64)], None, k, filters, with_reasons=with_reasons)[
                0
            ]
            for pos in np.flatnonzero(~known):
                results[pos] = anon
        return results

    def recommend_session(
        self, item_ids: Sequence[str], k: int = 10, filters: Filters | None = None
    ) -> list[Recommendation]:
        """Top-``k`` for an anonymous session of recent item ids (oldest first); unknown ids are ignored."""
        return self.recommend_user(None, k, filters, recent=item_ids)[0]

    def user_history(self, user_id: str | None, recent: Sequence[str] = ()) -> tuple[np.ndarray, int, str]:
        """One user's item rows (oldest first), their training row (-1: fold the history in) and the
        basis of what they get: ``history`` (the trained user as fitted), ``history+recent`` (the
        training history with ``recent`` item ids after it: events since training), ``session``
        (an unknown user's ``recent`` items only) or ``popular`` (nothing known). Unknown recent ids
        are ignored."""
        row = -1 if user_id is None else int(self.data.users.index([user_id])[0])
        extra = self.item_rows(recent, strict=False) if len(recent) else np.zeros(0, np.int64)
        extra = extra[extra >= 0]
        if row >= 0 and not len(extra):
            return self.data.history(row), row, "history"
        if row >= 0:
            return np.concatenate([self.data.history(row), extra]), -1, "history+recent"
        return extra, -1, ("session" if len(extra) else "popular")

    def recommend_user(
        self,
        user_id: str | None,
        k: int = 10,
        filters: Filters | None = None,
        recent: Sequence[str] = (),
        *,
        with_reasons: bool = True,
        ranking: str = "hybrid",
    ) -> tuple[list[Recommendation], str]:
        """Top-``k`` for one user (or an anonymous session) with ``recent`` item ids since training;
        returns the list and its basis (see ``user_history``). ``ranking`` as in ``score_frame``."""
        return self.recommend_users(
            [(user_id, recent)], k, filters, with_reasons=with_reasons, ranking=ranking
        )[0]

    def recommend_users(
        self,
        requests: Sequence[tuple[str | None, Sequence[str]]],
        k: int = 10,
        filters: Filters | None = None,
        *,
        with_reasons: bool = True,
        ranking: str = "hybrid",
    ) -> list[tuple[list[Recommendation], str]]:
        """``recommend_user`` for several (user id, recent item ids) at once, in one pass per kind of
        user (trained users as fitted; folded-in histories): what the service does with requests
        that arrive together. Each answer is the one ``recommend_user`` gives alone: the scorers score
        a user bit for bit the same in any batch (``user_item_scores``), but for SASRec, whose
        transformer's float32 sums depend on the batch by about 1e-6, which can swap near-ties."""
        _check_k(k)
        found = [self.user_history(user_id, recent) for user_id, recent in requests]
        out: list[tuple[list[Recommendation], str]] = [([], basis) for _, _, basis in found]
        for known in (True, False):
            idx = [i for i, (_, row, _) in enumerate(found) if (row >= 0) == known]
            if not idx:
                continue
            users = np.array([found[i][1] for i in idx]) if known else None
            lists = self.recommend_rows(
                [found[i][0] for i in idx], users, k, filters, with_reasons=with_reasons, ranking=ranking
            )
            for i, recs in zip(idx, lists, strict=True):
                out[i] = (recs, found[i][2])
        return out

    def rank(
        self, user_id: str | None, candidate_ids: Sequence[str], recent: Sequence[str] = ()
    ) -> list[Recommendation]:
        """``candidate_ids`` ordered for ``user_id`` (unknown user: no history; ``recent`` as in
        ``user_history``); unknown items are refused."""
        items = self.item_rows(candidate_ids, strict=True)
        if len(items) == 0:
            return []
        h, row, _ = self.user_history(user_id, recent)
        hist, users = [h], (np.array([row]) if row >= 0 else None)
        _, frame = self.features(hist, users, items)
        # Ties broken by item row, as everywhere else, so rank() agrees with recommend().
        scored, x = self._score_frame(frame, "hybrid")
        scored = scored.sort(["score", "item"], descending=[True, False])
        return self._to_recommendations(scored, hist, True, scored, x)[0]

    def item_rows(self, item_ids: Sequence[str], *, strict: bool) -> np.ndarray:
        rows = self.data.items.index([str(i) for i in item_ids])
        if strict and (rows < 0).any():
            bad = [str(item_ids[i]) for i in np.flatnonzero(rows < 0)[:5]]
            raise ConfigError(f"unknown item ids {bad} ({int((rows < 0).sum())} in all)")
        return rows

    def title(self, item: int) -> str:
        return self._titles[item]


def _titles(items: pl.DataFrame) -> list[str]:
    for column in ("title", "text"):
        if column in items.columns:
            values = items[column].fill_null("").to_list()
            ids = items["item_id"].to_list()
            return [short_title(v) if v.strip() else str(i) for v, i in zip(values, ids, strict=True)]
    return [str(i) for i in items["item_id"].to_list()]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, not {k!r}")


class HybridScorer(Scorer):
    """A fitted ``Recommender`` behind the scorer interface, for the shared evaluator.

    Candidates get the ranker's score; every other item scores below all of them, in the order of
    the first candidate source (so full-ranking metrics beyond the candidate depth stay defined).
    """

    name = "hybrid"

    def __init__(self, recommender: Recommender) -> None:
        super().__init__()
        self.recommender = recommender
        self.config = recommender.config

    def fit(self, data: TrainData) -> HybridScorer:
        if data.fingerprint != self.recommender.data.fingerprint:
            raise ConfigError("the recommender was fitted on other training data than the evaluation's")
        self._data = data
        return self

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        rec = self.recommender
        out = np.empty((len(users), self.data.n_items), dtype=np.float64)
        for s in range(0, len(users), rec.config.chunk_size):
            part = users[s : s + rec.config.chunk_size]
            chunk, frame = rec.features([self.data.history(int(u)) for u in part], part)
            first = next(iter(rec.config.candidates))
            fallback = -1e6 - full_ranks(chunk.scores[first]).astype(np.float64)
            score = rec.ranker.predict(frame)
            fallback[frame["row"].to_numpy(), frame["item"].to_numpy()] = score
            out[s : s + len(part)] = fallback
        return out if items is None else out[:, items]
