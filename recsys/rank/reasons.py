"""Short human-readable reasons for a recommended item, from its largest feature contributions.

The ranker's per-feature contributions (TreeSHAP, additive in the score) are summed into families;
the families that pushed the item up the most, in that order, become sentences that name real items
of the user's history, its category or brand:

- text similarity → "similar to <title> you viewed" (the recent item closest in text);
- co-visitation → "often bought after <title>" (the recent item that leads to it most often);
- collaborative filtering → "liked by shoppers with histories like yours";
- popularity → "popular in <category>";
- category / brand affinity → "matches your interest in <category>" /
  "from <brand>, a brand you chose before".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from recsys.recommender import Recommender

MAX_REASONS = 2


def family(feature: str, scorer_models: dict[str, str]) -> str:
    """Which reason family a feature belongs to."""
    if feature.startswith("sim_"):
        return "similar"
    if feature == "transition_from_last":
        return "after"
    if feature.startswith("popularity"):
        return "popular"
    if feature in ("category_affinity", "brand_affinity"):
        return feature
    for name, model in scorer_models.items():
        if feature.startswith(f"{name}_") or feature == f"from_{name}":
            return {"text": "similar", "encoder": "similar", "covisit": "after", "popularity": "popular"}.get(
                model, "cf"
            )
    return "other"


def explain(rec: Recommender, picked: pl.DataFrame, histories: list[np.ndarray]) -> list[list[str]]:
    """Reasons for each row of ``picked`` (columns row, item and the model's features)."""
    models = {name: spec["model"] for name, spec in rec.config.scorers.items()}
    contrib = rec.ranker.contributions(picked)  # (n, n_features)
    families = [family(f, models) for f in rec.ranker.features]
    names = sorted(set(families) - {"other"})
    index = {n: i for i, n in enumerate(names)}
    sums = np.zeros((picked.height, len(names)))
    for j, fam in enumerate(families):
        if fam in index:
            sums[:, index[fam]] += contrib[:, j]
    side = rec.side
    out: list[list[str]] = []
    for p, (row, item) in enumerate(picked.select("row", "item").iter_rows()):
        recent = histories[row][-5:][::-1]
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
        counts = np.asarray(side.transitions[recent, item].todense()).ravel()
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
