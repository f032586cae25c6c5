"""Catalogue changes without retraining: new or changed items, withdrawn items, similar items.

A new item is embedded by every text scorer's own encoder (the lexical scorer: its words, with the
fitted weights) when it arrives and joins the catalogue at the end (new rows); the collaborative
scorers never saw it, so they score it ``-inf`` (the scorer contract for an unknown item) and the
ranker reads their features as missing. It is a candidate of the text sources at once, and of
everything else after the next training run.
A changed item (a known id) gets its new text embedded and its category and brand updated in place.
A withdrawn item stays in the vocabulary (histories still name it) but is never recommended.

Every change returns a new ``Recommender``: large fitted arrays are shared, the few that change
are copied, so a request that holds the old object keeps a consistent view while a change is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.data.dataset import item_texts
from recsys.data.schema import ITEM_ID, validate_items
from recsys.data.train_data import TrainData
from recsys.data.vocab import IdVocab
from recsys.errors import DataError
from recsys.rank.features import ItemSide, _era_keys, _labels, _names, listed_values, listing_order
from recsys.recommender import Recommender
from recsys.scorers.base import Scorer, grow_rows
from recsys.scorers.text import TextScorer

RRF_K = 60  # reciprocal-rank fusion constant for similar items (the usual 60)


def upsert_items(rec: Recommender, items: pl.DataFrame) -> Recommender:
    """``rec`` with ``items`` (canonical item columns) added, or changed where the id is known."""
    items = validate_items(items, source="new items")
    old = rec.data
    frame = _merge_frames(old.item_frame, items)
    data = _extend_data(old, frame)
    changed = old.items.index(items[ITEM_ID])
    changed = changed[changed >= 0]
    touched = np.concatenate([changed, np.arange(old.n_items, data.n_items)]).astype(np.int64)
    # The text readers re-read the touched items; the others stay as fitted (``Scorer.with_items``).
    scorers = {name: scorer.with_items(data, touched) for name, scorer in rec.scorers.items()}
    side = _extend_side(rec.side, data, scorers[rec.config.embeddings_from])
    if side.available is not None:
        side.available[touched] = True  # a withdrawn item put back on sale
    return Recommender(rec.config, data, scorers, rec.ranker, side)


def withdraw_items(rec: Recommender, item_ids: Sequence[str]) -> Recommender:
    """``rec`` with ``item_ids`` never recommended (they stay known in histories); unknown ids raise."""
    rows = rec.item_rows(item_ids, strict=True)
    available = np.ones(rec.data.n_items, bool) if rec.side.available is None else rec.side.available.copy()
    available[rows] = False
    side = dataclasses.replace(rec.side, available=available)
    return Recommender(rec.config, rec.data, rec.scorers, rec.ranker, side)


def is_available(rec: Recommender, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) True for catalogue rows that may be recommended (-1, unknown, is False)."""
    ok = rows >= 0
    if rec.side.available is not None:
        ok[ok] &= rec.side.available[rows[ok]]
    return ok


@dataclass(frozen=True)
class SimilarItem:
    item_id: str
    score: float  # reciprocal-rank fusion of the text and co-visitation ranks
    text_similarity: float  # cosine of the item texts' embeddings
    covisits: int  # times one followed the other in a history (both directions)
    reasons: list[str]


SIGNALS = ("both", "text", "covisit")


def similar_items(rec: Recommender, item_id: str, k: int = 10, by: str = "both") -> list[SimilarItem]:
    """Items like ``item_id`` by text similarity, co-visitation, or ``both`` fused by reciprocal rank.

    Each signal ranks the catalogue (co-visitation only items seen next to this one); an item's
    score is the sum of 1 / (60 + rank) over the signals used that rank it, so with ``both`` an item
    ranked by both signals comes first (a new item has no co-visits: ask ``by="text"`` for
    substitutes). Withdrawn items are left out.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, not {k}")
    if by not in SIGNALS:
        raise DataError(f"by must be one of {list(SIGNALS)}, not {by!r}")
    row = int(rec.item_rows([item_id], strict=True)[0])
    side, n = rec.side, rec.data.n_items
    cos = side.embeddings @ side.embeddings[row]  # (n,)
    co = side.transitions.getrow(row).toarray().ravel() + side.transitions.getcol(row).toarray().ravel()
    ok = is_available(rec, np.arange(n))
    ok[row] = False
    fused = np.zeros(n, dtype=np.float64)
    signals = {"text": (cos, ok), "covisit": (co, ok & (co > 0))}
    for name, (signal, mask) in signals.items():
        if by not in ("both", name):
            continue
        order = np.flatnonzero(mask)[np.argsort(-signal[mask], kind="stable")]
        fused[order] += 1.0 / (RRF_K + 1 + np.arange(len(order)))
    ranked = ok & (fused > 0)
    best = np.flatnonzero(ranked)[np.argsort(-fused[ranked], kind="stable")[:k]]
    ids = rec.data.items.ids
    out = []
    for i in best:
        why = [f'similar description to "{rec.title(row)}" (cosine {cos[i]:.2f})']
        if co[i] > 0:
            why.append(f"seen together {int(co[i])} times")
        out.append(SimilarItem(str(ids[int(i)]), float(fused[i]), float(cos[i]), int(co[i]), why))
    return out


# ----- helpers ---------------------------------------------------------------------------------------
def _merge_frames(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """The catalogue with known ids replaced in place and new ids appended, in ``old``'s columns."""
    for column in new.columns:
        if column not in old.columns:
            old = old.with_columns(pl.lit(None, dtype=new.schema[column]).alias(column))
    new = new.select(
        [
            pl.col(c).cast(old.schema[c]) if c in new.columns else pl.lit(None, old.schema[c]).alias(c)
            for c in old.columns
        ]
    )
    known = old[ITEM_ID].is_in(new[ITEM_ID].implode())
    if known.any():
        updates = new.filter(pl.col(ITEM_ID).is_in(old[ITEM_ID].implode()))
        old = old.update(updates, on=ITEM_ID, include_nulls=True)
    return pl.concat([old, new.filter(~pl.col(ITEM_ID).is_in(old[ITEM_ID].implode()))])


def _extend_data(old: TrainData, frame: pl.DataFrame) -> TrainData:
    n = frame.height
    matrix = old.matrix.copy()
    matrix.resize((old.n_users, n))
    return dataclasses.replace(
        old,
        items=IdVocab(frame[ITEM_ID]) if n > old.n_items else old.items,
        matrix=matrix,
        item_text=item_texts(frame),
        item_frame=frame,
    )


def _extend_side(side: ItemSide, data: TrainData, text: Scorer) -> ItemSide:
    """Item statistics for the grown catalogue: new items have no interactions and keep old codes."""
    n = data.n_items
    if not isinstance(text, TextScorer):
        raise TypeError(f"item embeddings come from a text scorer, not {type(text).__name__}")
    trans = side.transitions.copy()
    trans.resize((n, n))
    names = {kind: _names(data.item_frame, kind) for kind in ("category", "brand")}
    codes = {}
    for kind, old_codes, old_names in (
        ("category", side.category, side.category_names),
        ("brand", side.brand, side.brand_names),
    ):
        # Codes are ranker features: keep the fitted ones, number unseen names after them.
        lookup = {str(name): int(c) for name, c in zip(old_names, old_codes, strict=True) if c >= 0}
        fresh = sorted({str(v) for v in names[kind] if v and str(v) not in lookup})
        start = max(lookup.values(), default=-1) + 1
        lookup.update({name: start + i for i, name in enumerate(fresh)})
        codes[kind] = np.array([lookup.get(str(v), -1) if v else -1 for v in names[kind]], dtype=np.int32)
    labels = _labels(names["category"])
    m = len(side.category_labels)
    unchanged = names["category"][:m] == side.category_names  # a new name may shift the common words
    labels[:m][unchanged] = side.category_labels[unchanged]
    factors = None if side.factors is None else grow_rows(side.factors, n)
    frame = data.item_frame
    # The fitted items keep their places unless an upsert changed their listing date; then the
    # events' times (``era_keys``, read off the places) are recomputed from the histories.
    listed, era_keys = None, side.era_keys  # new items have no events, so no keys
    if side.listed is not None:
        listed = listing_order(frame, listed_values(frame)[:m])
        if not np.array_equal(listed[:m], side.listed, equal_nan=True):
            era_keys = _era_keys(data.seq_items, data.seq_indptr, listed)
    return ItemSide(
        embeddings=text.item_embeddings,
        transitions=trans,
        popularity=grow_rows(side.popularity, n, 0.0),
        popularity_recent=grow_rows(side.popularity_recent, n, 0.0),
        position=grow_rows(side.position, n, np.nan),
        category=codes["category"],
        brand=codes["brand"],
        category_names=names["category"],
        category_labels=labels,
        brand_names=names["brand"],
        factors=factors,
        available=None if side.available is None else grow_rows(side.available, n, True),
        count_scale=side.count_scale,
        listed=listed,
        era_keys=era_keys,
    )


__all__ = ["SimilarItem", "is_available", "similar_items", "upsert_items", "withdraw_items"]
