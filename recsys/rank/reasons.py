"""Short human-readable reasons for a recommended item, from the feature families that lifted it.

A family's contribution to an item is how much the ranker's score drops when that family's features
are replaced by their average over the user's candidates: what makes this item rank above a typical
candidate (one batched predict over items × families, a fraction of a millisecond; TreeSHAP costs
about 1.5 ms per item on the trained ranker). The families that lifted the item the most, in that
order, become sentences that name real items of the user's history, its category or brand:

- text similarity, dense or word match → "similar to <title> you viewed" (the closest recent item,
  or the closest of the whole history where the ranker reads it: ``history_features``);
- co-visitation and transitions → "often bought after <title>" (the recent item, or item of the
  history, that leads to it most often);
- collaborative filtering, item factors included → "liked by shoppers with histories like yours";
- popularity → "popular in <category>";
- category / brand affinity → "matches your interest in <category>" /
  "from <brand>, a brand you chose before".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recsys.rank.features import N_RECENT

if TYPE_CHECKING:
    from recsys.recommender import Recommender

MAX_REASONS = 2
# The reason family of each scorer model's features; any other model's are collaborative ("cf").
MODEL_FAMILY = {
    "text": "similar",
    "encoder": "similar",
    "lexical": "similar",
    "covisit": "after",
    "popularity": "popular",
}
TITLE_CHARS = 80  # the longest item title a reason quotes


def short_title(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` as a reason quotes it: whole when it fits in ``limit`` characters, else cut at the
    last word boundary before it (unless that drops more than half) and ended with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-&/(") + "…"


def family(feature: str, scorer_models: dict[str, str]) -> str:
    """Which reason family a feature belongs to."""
    if feature.startswith("sim_"):
        return "similar"
    if feature in ("transition_from_last", "transition_from_history"):
        return "after"
    if feature.startswith("factor_sim_"):  # the item factors of ALS: collaborative
        return "cf"
    if feature.startswith("popularity"):
        return "popular"
    if feature in ("category_affinity", "brand_affinity"):
        return feature
    for name, model in scorer_models.items():
        if feature.startswith(f"{name}_") or feature == f"from_{name}":
            return MODEL_FAMILY.get(model, "cf")
    return "other"


def family_lift(
    rec: Recommender, picked: pl.DataFrame, candidates: pl.DataFrame, features_x: np.ndarray | None = None
) -> tuple[list[str], np.ndarray]:
    """Family names and (len(picked), n_families) score drops when each family's features take the
    mean of ``candidates`` (all scored candidates; same ``row`` numbering as ``picked``).
    ``features_x``: the candidates' feature matrix, rows in ``candidates``' order, with ``picked``
    carrying each row's place in it (``_pos``); without it both frames are converted here."""
    models = {name: spec["model"] for name, spec in rec.config.scorers.items()}
    features = rec.ranker.features
    families = [family(f, models) for f in features]
    names = sorted(set(families) - {"other"})
    if features_x is not None:
        c = features_x  # (C, F)
        x = c[picked["_pos"].to_numpy()]  # (n, F)
    else:
        x = rec.ranker.matrix(picked)
        c = rec.ranker.matrix(candidates)
    # Each row's candidate average (NaN, missing, left out), then gathered per picked item: (n, F).
    c_rows = candidates["row"].to_numpy()
    n_rows = int(max(c_rows.max(initial=-1), picked["row"].to_numpy().max(initial=-1))) + 1
    order = np.argsort(c_rows, kind="stable")
    c, c_rows = c[order], c_rows[order]
    starts = np.r_[0, np.flatnonzero(np.diff(c_rows)) + 1] if len(c_rows) else np.zeros(0, np.int64)
    means = np.full((n_rows, len(features)), np.nan, dtype=np.float32)
    if len(starts):
        sums = np.add.reduceat(np.nan_to_num(c, nan=0.0), starts, axis=0)
        counts = np.add.reduceat((~np.isnan(c)).astype(np.float32), starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[c_rows[starts]] = sums / counts
    baseline = means[picked["row"].to_numpy()]
    variants = [x]
    for name in names:
        cols = np.array([f == name for f in families])
        v = x.copy()
        v[:, cols] = baseline[:, cols]
        variants.append(v)
    scores = rec.ranker.predict_array(np.concatenate(variants)).reshape(
        len(variants), len(x)
    )  # (1 + n_fam, n)
    return names, (scores[0][None, :] - scores[1:]).T


def explain(
    rec: Recommender,
    picked: pl.DataFrame,
    histories: list[np.ndarray],
    candidates: pl.DataFrame,
    features_x: np.ndarray | None = None,
) -> list[list[str]]:
    """Reasons for each row of ``picked`` (columns row, item and the model's features;
    ``features_x`` as in ``family_lift``)."""
    names, sums = family_lift(rec, picked, candidates, features_x)
    side = rec.side
    out: list[list[str]] = []
    # The items a sentence may name: the recent ones the features compare, or the whole history
    # where the ranker reads it.
    keep = None if rec.config.history_features else -N_RECENT
    for p, (row, item) in enumerate(zip(picked["row"].to_list(), picked["item"].to_list(), strict=True)):
        recent = histories[row][keep:][::-1]
        reasons: list[str] = []
        for f in np.argsort(-sums[p], kind="stable"):
            if sums[p, f] <= 0 or len(reasons) >= MAX_REASONS:
                break
            text = _sentence(rec, names[f], item, recent)
            if text and text not in reasons:
                reasons.append(text)
        if not reasons:
            category = str(side.category_labels[item])
            reasons.append(f"popular in {category}" if category else "popular with shoppers")
        out.append(reasons)
    return out


def _sentence(rec: Recommender, fam: str, item: int, recent: np.ndarray) -> str | None:
    side = rec.side
    if fam == "similar" and len(recent):
        sims = side.embeddings[recent] @ side.embeddings[item]
        return f"similar to {rec.title(int(recent[int(np.argmax(sims))]))} you viewed"
    if fam == "after" and len(recent):
        counts = side.transition_counts(recent, np.full(len(recent), item))
        if counts.max() > 0:
            return f"often bought after {rec.title(int(recent[int(np.argmax(counts))]))}"
        return None
    if fam == "cf" and len(recent):
        return "liked by shoppers with histories like yours"
    if fam == "popular":
        category = str(side.category_labels[item])
        return f"popular in {category}" if category else "popular with shoppers"
    if fam == "category_affinity" and side.category[item] >= 0:
        return f"matches your interest in {side.category_labels[item]!s}"
    if fam == "brand_affinity" and side.brand[item] >= 0:
        return f"from {side.brand_names[item]}, a brand you chose before"
    return None
