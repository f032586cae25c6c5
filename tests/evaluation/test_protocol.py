"""The chunked full-ranking protocol with a scorer whose scores are known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import Dataset, TrainData, leave_one_out
from recsys.data.schema import validate_interactions, validate_items
from recsys.evaluation import evaluate
from recsys.scorers.base import Scorer


class FixedScorer(Scorer):
    """Scores every user with the same given vector."""

    name = "fixed"

    def __init__(self, vector):
        super().__init__()
        self.config = None
        self.vector = np.asarray(vector, dtype=np.float32)

    def fit(self, data):
        self._data = data
        return self

    def _score(self, users, items):
        row = self.vector if items is None else self.vector[items]
        return np.tile(row, (len(users), 1))


def dataset() -> Dataset:
    items = validate_items(pl.DataFrame({"item_id": [f"i{k}" for k in range(6)], "title": list("abcdef")}))
    inter = validate_interactions(
        pl.DataFrame(
            {
                "user_id": ["u", "u", "u", "v", "v"],
                "item_id": ["i0", "i1", "i5", "i2", "i3"],
                "position": [0, 1, 2, 0, 1],
            }
        )
    )
    return Dataset("hand", items, inter)


def test_history_excluded_and_ranks_by_hand():
    ds = dataset()
    split = leave_one_out(ds, "test")  # u: history i0, i1 → target i5; v: history i2 → target i3
    data = TrainData.from_split(ds, split)
    # Scores: i0 highest, then i1, i2, i3, i4, i5.
    res = evaluate(
        FixedScorer([6, 5, 4, 3, 2, 1]).fit(data),
        data,
        split,
        ks=(1, 3),
        coverage_k=(2, 10),
        keep_per_target=True,
    )
    ranks = dict(zip(res.per_target["user"], res.per_target["rank"], strict=True))
    # u: i0, i1 excluded → order i2, i3, i4, i5 → rank 3. v: i2 excluded → i0, i1, i3 → rank 2.
    assert ranks == {"u": 3, "v": 2}
    assert res.metrics["recall@3"] == pytest.approx(0.5)
    assert res.metrics["ndcg@3"] == pytest.approx(0.5 * (1 / np.log2(4)))
    assert res.metrics["mrr"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    # Top lists hold eligible items only. Top-2: u → i2 i3, v → i0 i1 (4 of 6 items);
    # top-10: u → i2 i3 i4 i5, v → i0 i1 i3 i4 i5 (all 6).
    assert res.metrics["coverage@2"] == pytest.approx(4 / 6)
    assert res.metrics["coverage@10"] == pytest.approx(1.0)
    assert res.protocol["users"] == 2 and "tie_breaking" in res.protocol


def test_chunking_does_not_change_results(loo_test):
    split, data = loo_test
    rng = np.random.default_rng(3)
    scorer = FixedScorer(rng.random(data.n_items)).fit(data)
    a = evaluate(scorer, data, split, chunk_size=7)
    b = evaluate(scorer, data, split, chunk_size=10_000)
    assert a.metrics == b.metrics
    assert a.slices == b.slices


def test_slices_partition_users(loo_test):
    split, data = loo_test
    res = evaluate(FixedScorer(np.arange(data.n_items, dtype=float)).fit(data), data, split)
    assert sum(s["cases"] for s in res.slices["history_length"].values()) == res.protocol["users"]
    assert sum(s["cases"] for s in res.slices["target_item_train_count"].values()) == res.protocol["targets"]
    weighted = sum(s["cases"] * s["recall@10"] for s in res.slices["history_length"].values())
    assert weighted / res.protocol["users"] == pytest.approx(res.metrics["recall@10"])


def test_nan_scores_rank_last_with_warning(loo_test):
    split, data = loo_test
    vec = np.full(data.n_items, np.nan)
    with pytest.warns(UserWarning, match="NaN"):
        res = evaluate(FixedScorer(vec).fit(data), data, split)
    assert res.metrics["recall@10"] >= 0
