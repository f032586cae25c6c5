"""Features of (user, candidate item) pairs for the ranker, as polars expressions over one frame.

Everything is computed from the training histories the scorers were fitted on, so when the ranker
learns from validation targets, no feature has seen the target (``tests/rank/test_leakage.py``).

Raw columns, gathered from the scorers' catalogue-wide matrices (``candidates.score_chunk``):
``<scorer>_score`` and ``<scorer>_rank`` for every scorer; text similarity of the candidate to the
last item and to the recent items (fine-tuned embeddings); the co-visitation transition count from
the last item; popularity overall and among users' latest items; the item's mean position in the
histories that hold it (its age, where there are no timestamps) and its gap to the last item's;
when the item went on sale (the items' ``listed_at``; on Amazon, the ASIN's allocation order), its
gap to the newest item of the user's history and its training events from about the user's time
(``popularity_era``); history length; repeat flag. Derived with
expressions: each score's gap to the user's best candidate, category and brand affinity (the share
of the user's history in the candidate's category / brand), source flags.

Over the whole history, not only the last five items (``history_features``, off by default): the
candidate's text and factor similarity to its nearest history item and to the history's mean, and
the transitions into it from any history item and out of it to any. Over run 36's checkpoints, test
NDCG@10 0.1148 against 0.1132 (+0.0016, 95% interval +0.0006 to +0.0026), but the validation event
+0.0008 (−0.0007 to +0.0023), and one event earlier, over run 38's, −0.0001 (−0.0013 to +0.0010):
validation does not choose them, and they cost served requests a third more time.

Counts (popularity, transitions, the scores of scorers that count events) are per 10,000 training
interactions: a label fold's histories are one or two events per user shorter than the test
split's, and the serving data one longer, so raw counts would put the same item at other places
of the ranker's splits in each. Measured: test NDCG@10 0.1120 against 0.1117 raw, Recall@50 0.2926
against 0.2888, holdout level.

Measured and left out (benchmarks/RESULTS.md, issue 4): the scorers' consensus (best rank, sources
ranking a candidate in their top 10 / 50, reciprocal-rank fusion) and the user's mean popularity
with the candidate's against it: validation holdout NDCG@10 0.2211 with them, 0.2261 without; each
score's standard score over the user's catalogue: 0.2321 with, 0.2338 without. Session-based
neighbours (``sknn``), the best single scorer on validation, as one more scorer and candidate
source: holdout 0.2313 against 0.2322 (0.2102 against 0.2208 with the ranker's other seeds), test
level (0.1125 / 0.1121 against 0.1119 / 0.1120).

The word match of the candidate's text to the recent items' (the ``lexical`` scorer) as one
more scorer: with its 50 best items as candidates the validation holdout per labelled user falls
(about 0.1105 against 0.1150); as features alone it is level (0.1156), test too (0.1129 against
0.1128). Its words enter instead through seqlinear's text prior.

When the items went on sale (``item_listed``, ``item_listed_gap``, ``popularity_era``): holdout
NDCG@10 0.2138 against 0.2103 (0.2265 against 0.2217 with the ranker's other seeds), the largest
validation gain of any feature since the sequential scorers; test level (0.1126 / 0.1125 against
0.1131 / 0.1125).

Category transitions (the share of the training histories' next items that fall in the
candidate's category after the last item's category, and the same averaged over the last three
items): out-of-fold NDCG@10 of every user's validation event −0.0005 (95% interval −0.0021 to
+0.0011), test −0.0002 (−0.0012 to +0.0009), over one set of checkpoints and candidates: left out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data.schema import LISTED_AT
from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.rank.candidates import ScoredChunk, row_groups
from recsys.scorers.base import Scorer

N_RECENT = 5  # recent items compared by text similarity
# Code columns of every feature frame (integer codes, -1 unknown) that the ranker may read as
# categories (``ranker.categorical``), not model inputs otherwise: the candidate's category, its
# brand, and the item itself (a lift per item beyond what the features say of it; an item added
# after training falls with the items the splits did not single out).
CATEGORICAL = ("category", "brand", "item")
COUNT_FEATURES = ("per_10k", "raw")  # RecommenderConfig.count_features
ERA_SPAN = 0.5  # ItemSide.era_keys: item + ERA_SPAN × time keeps each item's keys apart
# popularity_era: events within this much of the user's time (as places in the catalogue's listing
# order). Chosen on the validation split, by the target's recall in the 50 best items by this count
# alone: 0.1192 at 0.3, 0.1162 at 0.2, 0.1153 at 0.5, 0.0896 at 0.05; popularity 0.1036.
ERA_WIDTH = 0.3


@dataclass
class ItemSide:
    """Per-item statistics and embeddings the features read; built once from the training data."""

    embeddings: np.ndarray  # (n_items, d) unit vectors (the fine-tuned encoder's)
    transitions: sp.csr_matrix  # (n_items, n_items) counts of item → next item
    popularity: np.ndarray  # (n_items,) training interactions
    popularity_recent: np.ndarray  # (n_items,) how often the item is among users' last 3 items
    # (n_items,) where the item's interactions sit in their histories, on average: 0 first, 1 last
    # (NaN: none). With no timestamps, the item's age: new products come late in histories.
    position: np.ndarray
    category: np.ndarray  # (n_items,) int code, -1 unknown
    brand: np.ndarray  # (n_items,) int code, -1 unknown
    category_names: np.ndarray  # (n_items,) str, "" unknown
    category_labels: np.ndarray  # (n_items,) str: the name without the words every category starts with
    brand_names: np.ndarray  # (n_items,) str, "" unknown
    factors: np.ndarray | None = None  # (n_items, f) unit item vectors of a factor model (ALS), or None
    available: np.ndarray | None = None  # (n_items,) False for items withdrawn from sale; None: all
    # Multiplies count features (popularity, transitions, the scores of counting scorers): 10,000
    # over the training interactions, so a count means the same on a label fold's shorter
    # histories, the test split's and the serving data ("per_10k"); 1 keeps raw counts ("raw").
    count_scale: float = 1.0
    # (n_items,) when the item went on sale, as its place among the catalogue's ``listed_at``
    # values: 0 the oldest, 1 the newest, NaN unknown or no such column (``listing_order``); None
    # only for an ItemSide made by hand (the features then read NaN).
    listed: np.ndarray | None = None
    # (events,) sorted ``item + ERA_SPAN × t`` over the training events whose time ``t`` is known:
    # the newest ``listed`` of the user's items up to that event (a user cannot have had an item
    # before it went on sale). ``era_counts`` reads it; None: no dates.
    era_keys: np.ndarray | None = None
    _transition_keys: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def transition_counts(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(P,) how often item ``b[p]`` followed item ``a[p]`` in a history; 0 for -1 (no item)."""
        if self._transition_keys is None:
            self._transition_keys = pair_keys(self.transitions)
        return _pair_values(self.transitions, self._transition_keys, a, b)

    @classmethod
    def from_scorers(
        cls, data: TrainData, scorers: dict[str, Scorer], embeddings_from: str, counts: str = "per_10k"
    ) -> ItemSide:
        """Embeddings from the named text scorer, item factors from the first factor scorer (if any);
        ``counts`` as ``RecommenderConfig.count_features``."""
        from recsys.scorers.factor import FactorScorer
        from recsys.scorers.text import TextScorer

        text = scorers[embeddings_from]
        if not isinstance(text, TextScorer):
            raise ConfigError(f"embeddings_from={embeddings_from!r} is not a text scorer")
        factor = next((s for s in scorers.values() if isinstance(s, FactorScorer)), None)
        factors = None
        if factor is not None:
            norms = np.linalg.norm(factor.item_factors, axis=1, keepdims=True)
            factors = factor.item_factors / np.maximum(norms, 1e-12)
        return cls.build(data, text.item_embeddings, factors, counts)

    @classmethod
    def build(
        cls,
        data: TrainData,
        embeddings: np.ndarray,
        factors: np.ndarray | None = None,
        counts: str = "per_10k",
    ) -> ItemSide:
        if counts not in COUNT_FEATURES:
            raise ConfigError(f"count_features must be one of {', '.join(COUNT_FEATURES)}, not {counts!r}")
        seq, indptr, n = data.seq_items, data.seq_indptr, data.n_items
        user_of = np.repeat(np.arange(data.n_users), np.diff(indptr))
        same = user_of[:-1] == user_of[1:]
        trans = sp.csr_matrix(
            (np.ones(int(same.sum()), np.float32), (seq[:-1][same], seq[1:][same])), shape=(n, n)
        )
        position_from_end = np.repeat(indptr[1:], np.diff(indptr)) - np.arange(len(seq))  # 1 = last
        recent = np.bincount(seq[position_from_end <= 3], minlength=n).astype(np.float32)
        lengths = np.repeat(np.diff(indptr), np.diff(indptr))
        relative = np.where(lengths > 1, (lengths - position_from_end) / np.maximum(lengths - 1, 1), 1.0)
        seen = np.bincount(seq, minlength=n)
        position = np.bincount(seq, weights=relative, minlength=n) / np.maximum(seen, 1)
        return cls(
            embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
            transitions=trans,
            popularity=data.item_counts.astype(np.float32),
            popularity_recent=recent,
            position=np.where(seen > 0, position, np.nan).astype(np.float32),
            category=_codes(_names(data.item_frame, "category")),
            brand=_codes(_names(data.item_frame, "brand")),
            category_names=_names(data.item_frame, "category"),
            category_labels=_labels(_names(data.item_frame, "category")),
            brand_names=_names(data.item_frame, "brand"),
            factors=None if factors is None else np.ascontiguousarray(factors, dtype=np.float32),
            count_scale=10_000.0 / max(len(seq), 1) if counts == "per_10k" else 1.0,
            listed=(listed := listing_order(data.item_frame)),
            era_keys=_era_keys(seq, indptr, listed),
        )

    def era_counts(self, items: np.ndarray, when: np.ndarray, width: float = ERA_WIDTH) -> np.ndarray:
        """(P,) training events of ``items[p]`` whose time lies within ``width`` of ``when[p]``
        (both as ``listed`` places); NaN where ``when`` is unknown or there are no dates."""
        out = np.full(len(items), np.nan, dtype=np.float32)
        known = np.isfinite(when)
        if self.era_keys is None or not known.any():
            return out
        base = items[known].astype(np.float64)
        lo = base + ERA_SPAN * np.clip(when[known] - width, 0.0, 1.0)
        hi = base + ERA_SPAN * np.clip(when[known] + width, 0.0, 1.0)
        keys = self.era_keys
        out[known] = np.searchsorted(keys, hi, side="right") - np.searchsorted(keys, lo, side="left")
        return out


def _era_keys(seq: np.ndarray, indptr: np.ndarray, listed: np.ndarray) -> np.ndarray | None:
    """``ItemSide.era_keys`` of the histories ``seq`` (users' items in order, bounds ``indptr``)."""
    if not np.isfinite(listed).any() or not len(seq):
        return None
    user_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)).astype(np.float64)
    # A running maximum within each user: offsets of 3 per user keep users apart (places are
    # 0..1, unknown ones -1) so one cumulative maximum over every event does it.
    value = np.where(np.isfinite(listed[seq]), listed[seq], -1.0) + 3.0 * user_of
    when = np.maximum.accumulate(value) - 3.0 * user_of
    known = when >= 0
    return np.sort(seq[known] + ERA_SPAN * when[known])


def listing_order(items: pl.DataFrame, reference: np.ndarray | None = None) -> np.ndarray:
    """(n_items,) each item's ``listed_at`` as its place among ``reference`` (raw ``listed_at``
    values; default the items' own): 0 the oldest, 1 the newest, ties sharing their mean place;
    NaN where unknown. A place, not the raw value: dates, ASIN order and sequence numbers all mean
    the same to the ranker, and a catalogue that grows keeps the fitted items' places."""
    raw = listed_values(items)
    ref = np.sort(raw[np.isfinite(raw)] if reference is None else reference[np.isfinite(reference)])
    out = np.full(len(raw), np.nan, dtype=np.float32)
    if len(ref) < 2:
        return out
    known = np.isfinite(raw)
    below = np.searchsorted(ref, raw[known], side="left")
    upto = np.searchsorted(ref, raw[known], side="right")
    out[known] = np.clip((below + upto - 1) / 2 / (len(ref) - 1), 0.0, 1.0)
    return out


def listed_values(items: pl.DataFrame) -> np.ndarray:
    """(n_items,) the items' raw ``listed_at`` as floats, NaN where missing or absent."""
    if LISTED_AT not in items.columns:
        return np.full(items.height, np.nan)
    return items[LISTED_AT].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)


def _names(items: pl.DataFrame, column: str) -> np.ndarray:
    if column not in items.columns:
        return np.full(items.height, "", dtype=object)
    return np.array(items[column].fill_null("").str.strip_chars().to_list(), dtype=object)


def _labels(names: np.ndarray) -> np.ndarray:
    """Names without their common leading words ("Industrial & Scientific ..." in a one-department shop)."""
    words = [str(n).split() for n in names if n]
    common = 0
    if words:
        shortest = min(len(w) for w in words)
        while common < shortest - 1 and len({tuple(w[: common + 1]) for w in words}) == 1:
            common += 1
    return np.array([" ".join(str(n).split()[common:]) for n in names], dtype=object)


def _codes(names: np.ndarray) -> np.ndarray:
    """Integer codes of the names, -1 for the empty name."""
    uniques, codes = np.unique(names.astype(str), return_inverse=True)
    codes = codes.astype(np.int32)
    if len(uniques) and uniques[0] == "":
        codes -= 1  # "" sorts first: it becomes -1
    return codes


def _pair_values(
    matrix: sp.csr_matrix, keys: tuple[np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """matrix[a, b] for pairs, 0 where a or b is -1 (no such item) or outside the matrix.

    One binary search per pair over the matrix's sorted (row, column) ``keys`` (``pair_keys``):
    several times faster than scipy's fancy indexing for the few hundred pairs of a request."""
    out = np.zeros(len(a), dtype=np.float32)
    n_rows, n_cols = matrix.shape
    ok = (a >= 0) & (b >= 0) & (a < n_rows) & (b < n_cols)
    sorted_keys, values = keys
    if not ok.any() or not len(sorted_keys):
        return out
    query = a[ok].astype(np.int64) * n_cols + b[ok]
    pos = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    out[ok] = np.where(sorted_keys[pos] == query, values[pos], 0.0)
    return out


def pair_keys(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(sorted row × n_cols + column keys, their values) of a sparse matrix's stored entries."""
    canonical = sp.csr_matrix(matrix, copy=True)
    canonical.sum_duplicates()  # sorted columns within each row, no repeats
    rows = np.repeat(np.arange(canonical.shape[0], dtype=np.int64), np.diff(canonical.indptr))
    return rows * canonical.shape[1] + canonical.indices, canonical.data.astype(np.float32)


def _cosine(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan, dtype=np.float32)
    ok = (a >= 0) & (b >= 0)
    out[ok] = np.einsum("pd,pd->p", vectors[a[ok]], vectors[b[ok]])
    return out


def _history_counts(
    hist_rows: np.ndarray, hist_codes: np.ndarray, rows: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """(P,) how many of row ``rows[p]``'s history items have code ``codes[p]`` (0 for code -1)."""
    width = int(max(codes.max(initial=-1), hist_codes.max(initial=-1))) + 2
    known = hist_codes >= 0
    keys, counts = np.unique(hist_rows[known] * width + hist_codes[known], return_counts=True)
    out = np.zeros(len(rows), dtype=np.float32)
    if len(keys):
        query = rows * width + codes
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        found = (codes >= 0) & (keys[pos] == query)
        out[found] = counts[pos[found]]
    return out


def _newest(listed: np.ndarray, hist_items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(U,) the largest ``listed`` over each user's history items (NaN: none known)."""
    out = np.full(len(lengths), np.nan, dtype=np.float32)
    nonempty = lengths > 0
    if nonempty.any():
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
        out[nonempty] = np.fmax.reduceat(listed[hist_items], starts)
    return out


def _recent_matrix(histories: list[np.ndarray], n: int) -> np.ndarray:
    """(U, n) the last ``n`` items per user, newest first, -1 padded."""
    out = np.full((len(histories), n), -1, dtype=np.int64)
    for r, h in enumerate(histories):
        tail = h[-n:][::-1]
        out[r, : len(tail)] = tail
    return out


# ----- expression factories -------------------------------------------------------------------------
def gap_to_best(scorer: str) -> pl.Expr:
    """How far below the scorer's best item for this user (over the catalogue, history excluded)."""
    return (pl.col(f"{scorer}_score") - pl.col(f"_{scorer}_best")).alias(f"{scorer}_score_gap")


def from_source(scorer: str, depth: int) -> pl.Expr:
    return (pl.col(f"{scorer}_rank") < depth).cast(pl.Int8).alias(f"from_{scorer}")


def affinity(kind: str) -> pl.Expr:
    """Share of the user's history in the candidate's category (or brand); 0 when unknown."""
    share = pl.col(f"{kind}_count") / pl.col("history_length").clip(lower_bound=1)
    return pl.when(pl.col(kind) >= 0).then(share.fill_null(0.0)).otherwise(0.0).alias(f"{kind}_affinity")


def build_features(
    chunk: ScoredChunk,
    rows: np.ndarray,
    items: np.ndarray,
    side: ItemSide,
    depth: dict[str, int],
    history: bool = False,
) -> pl.DataFrame:
    """One row per (chunk row, item) pair with every feature; ``feature_names`` lists the model's
    columns. ``history``: also the features over the whole history (``HISTORY_FEATURES``)."""
    recent = _recent_matrix(chunk.histories, N_RECENT)  # (U, N_RECENT)
    lengths = np.array([len(h) for h in chunk.histories], dtype=np.int32)
    cols: dict[str, np.ndarray] = {"row": rows, "item": items}
    for name, s in chunk.raw.items():
        scale = side.count_scale if name in chunk.counting else 1.0
        v = s[rows, items].astype(np.float32) * np.float32(scale)
        v[~np.isfinite(v)] = np.nan  # LightGBM: missing
        cols[f"{name}_score"] = v
        cols[f"{name}_rank"] = chunk.rank_of(name, rows, items)
        best = chunk.scores[name].max(axis=1) if len(rows) else np.zeros(0, np.float32)
        best = np.where(np.isfinite(best), best * np.float32(scale), np.nan).astype(np.float32)
        cols[f"_{name}_best"] = best[rows]
    # Text similarity to the recent items: each user's candidates (rows are grouped by user) times
    # their recent items' vectors, one small product per user.
    emb = side.embeddings
    sims = _recent_similarities(emb, rows, items, recent)
    cols["sim_last"] = sims[:, 0]
    counted = (~np.isnan(sims)).sum(axis=1)
    cols["sim_max"] = np.where(counted > 0, np.nan_to_num(sims, nan=-2.0).max(axis=1, initial=-2.0), np.nan)
    cols["sim_mean"] = np.where(counted > 0, np.nan_to_num(sims).sum(axis=1) / np.maximum(counted, 1), np.nan)
    last, second = recent[rows, 0], recent[rows, 1]
    per = np.float32(side.count_scale)
    cols["transition_from_last"] = side.transition_counts(last, items) * per
    cols["transition_from_second_last"] = side.transition_counts(second, items) * per
    # The candidate usually comes before the last item:
    cols["transition_to_last"] = side.transition_counts(items, last) * per
    cols["factor_sim_last"] = (
        _cosine(side.factors, items, last)
        if side.factors is not None
        else np.full(len(rows), np.nan, np.float32)
    )
    recent_rows = recent[rows]  # (P, N_RECENT)
    valid = recent_rows >= 0
    n_valid = np.maximum(valid.sum(axis=1), 1)
    for kind, codes in (("category", side.category), ("brand", side.brand)):
        cand = codes[items]
        same = (codes[np.where(valid, recent_rows, 0)] == cand[:, None]) & valid & (cand[:, None] >= 0)
        cols[f"same_{kind}_as_last"] = same[:, 0].astype(np.int8)
        cols[f"{kind}_recent_share"] = (same.sum(axis=1) / n_valid).astype(np.float32)
    cols["popularity"] = side.popularity[items] * per
    cols["popularity_recent"] = side.popularity_recent[items]
    cols["item_position"] = side.position[items]
    # The candidate's age against the user's last item's: the same era of the catalogue or not.
    last_position = np.where(last >= 0, side.position[np.maximum(last, 0)], np.nan)
    cols["item_position_gap"] = (cols["item_position"] - last_position).astype(np.float32)
    cols["history_length"] = lengths[rows]
    hist_rows = np.repeat(np.arange(len(chunk.histories)), lengths)
    hist_items = np.concatenate(chunk.histories) if len(hist_rows) else np.zeros(0, np.int64)
    # When the candidate went on sale, against the newest item the user has had (a user whose
    # history stops at products of 2012 buys next among what was on sale then), and its training
    # events from about the user's time: popularity in their era.
    listed = side.listed if side.listed is not None else np.full(len(emb), np.nan, np.float32)
    newest = _newest(listed, hist_items, lengths)[rows]
    cols["item_listed"] = listed[items]
    cols["item_listed_gap"] = (cols["item_listed"] - newest).astype(np.float32)
    cols["popularity_era"] = side.era_counts(items, newest) * per
    n = max(len(emb), int(items.max(initial=0)) + 1)
    cols["repeat"] = np.isin(rows * n + items, hist_rows * n + hist_items).astype(np.int8)
    if history:
        cols.update(_history_features(side, rows, items, hist_rows, hist_items, len(chunk.histories)))
    cols["category"] = side.category[items]
    cols["brand"] = side.brand[items]
    for kind, codes in (("category", side.category), ("brand", side.brand)):
        cols[f"{kind}_count"] = _history_counts(hist_rows, codes[hist_items], rows, codes[items])
    # Eager, not lazy: for a request's few hundred rows the query planner costs more than it saves.
    return (
        pl.DataFrame(cols)
        .with_columns(*derived_features(tuple(chunk.scores), tuple(depth.items())))
        .drop([f"_{name}_best" for name in chunk.scores])
    )


@functools.lru_cache(maxsize=64)
def derived_features(scorers: tuple[str, ...], depth: tuple[tuple[str, int], ...]) -> tuple[pl.Expr, ...]:
    """The expressions over the raw columns (built once per configuration)."""
    return (
        *[gap_to_best(name) for name in scorers],
        *[from_source(name, n) for name, n in depth],
        affinity("category"),
        affinity("brand"),
    )


def _similarity_blocks(
    vectors: np.ndarray, rows: np.ndarray, items: np.ndarray, item_list: Callable[[int], np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per row of ``rows`` (pairs grouped by user) whose list ``item_list(row)`` holds an item with a
    vector: the positions of the row's pairs, the places in the list of those items, their vectors
    (L, d), and the pairs' items against them, one product (pairs of this row, L)."""
    for idx in row_groups(rows):
        listed = item_list(int(rows[idx[0]]))
        keep = np.flatnonzero((listed >= 0) & (listed < len(vectors)))  # -1: none; an item added later
        if len(keep):
            past = vectors[listed[keep]]
            yield idx, keep, past, vectors[items[idx]] @ past.T


def _recent_similarities(
    emb: np.ndarray, rows: np.ndarray, items: np.ndarray, recent: np.ndarray
) -> np.ndarray:
    """(P, N_RECENT) cosine of each pair's item to its user's recent items (NaN where none)."""
    sims = np.full((len(rows), recent.shape[1]), np.nan, dtype=np.float32)
    for idx, keep, _, block in _similarity_blocks(emb, rows, items, lambda r: recent[r]):
        sims[idx[:, None], keep[None, :]] = block
    return sims


def _history_features(
    side: ItemSide,
    rows: np.ndarray,
    items: np.ndarray,
    hist_rows: np.ndarray,
    hist_items: np.ndarray,
    n_rows: int,
) -> dict[str, np.ndarray]:
    """``HISTORY_FEATURES`` of the pairs (``rows``, ``items``) over every item of each row's history
    (``hist_items``, grouped by ``hist_rows``); NaN (similarities) or 0 (counts) where it is empty."""
    out: dict[str, np.ndarray] = {}
    # Each row's history is hist_items[bounds[r]:bounds[r + 1]] (hist_rows is sorted).
    bounds = np.searchsorted(hist_rows, np.arange(n_rows + 1))
    spaces = {"sim": side.embeddings, "factor_sim": side.factors}
    for name, vectors in spaces.items():
        nearest = np.full(len(rows), np.nan, dtype=np.float32)
        centroid = np.full(len(rows), np.nan, dtype=np.float32)
        if vectors is not None and len(rows) and len(hist_rows):
            known = np.minimum(items, len(vectors) - 1)  # those past the vectors are NaN below
            blocks = _similarity_blocks(vectors, rows, known, lambda r: hist_items[bounds[r] : bounds[r + 1]])
            for idx, _, past, block in blocks:  # block: (pairs of this row, its history items)
                nearest[idx] = block.max(axis=1)
                # The cosine to the history's mean vector: the mean of the products over its norm.
                centroid[idx] = block.mean(axis=1) / max(float(np.linalg.norm(past.mean(axis=0))), 1e-12)
            unknown = items >= len(vectors)
            nearest[unknown] = np.nan
            centroid[unknown] = np.nan
        out[f"{name}_history_max"] = nearest
        out[f"{name}_history_centroid"] = centroid
    # Transitions from (to) any item of the history into (out of) the candidate, per 10,000
    # training interactions: each pair against each of its row's history items, one lookup each in
    # the transition counts' sorted keys, summed per pair.
    starts = bounds[rows]
    lengths = bounds[rows + 1] - starts
    pair = np.repeat(np.arange(len(rows)), lengths)
    # Pair p's history items sit at starts[p], starts[p] + 1, ... in hist_items.
    hist = hist_items[np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(len(pair))]
    cand = items[pair]
    per = np.float32(side.count_scale)
    for name, (a, b) in (("from", (hist, cand)), ("to", (cand, hist))):
        sums = np.bincount(pair, weights=side.transition_counts(a, b), minlength=len(rows))
        out[f"transition_{name}_history"] = sums.astype(np.float32) * per
    return out


# Features over the whole history (``RecommenderConfig.history_features``).
HISTORY_FEATURES = (
    "sim_history_max",
    "sim_history_centroid",
    "factor_sim_history_max",
    "factor_sim_history_centroid",
    "transition_from_history",
    "transition_to_history",
)


def feature_names(scorers: list[str], depth: dict[str, int], history: bool = False) -> list[str]:
    """The model's input columns, in order; ``history``: with ``HISTORY_FEATURES``."""
    names: list[str] = []
    for s in scorers:
        names += [f"{s}_score", f"{s}_rank", f"{s}_score_gap"]
    names += ["sim_last", "sim_max", "sim_mean", "factor_sim_last"]
    names += ["transition_from_last", "transition_from_second_last", "transition_to_last"]
    names += ["popularity", "popularity_recent", "history_length", "repeat"]
    names += ["item_position", "item_position_gap", "item_listed", "item_listed_gap", "popularity_era"]
    names += ["category_affinity", "brand_affinity", "same_category_as_last", "same_brand_as_last"]
    names += ["category_recent_share", "brand_recent_share"]
    if history:
        names += list(HISTORY_FEATURES)
    names += [f"from_{s}" for s in depth]
    return names
