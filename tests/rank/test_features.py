"""Item-side features by hand: the items' position in histories, counts per 10,000 interactions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import TrainData
from recsys.errors import ConfigError
from recsys.rank.candidates import score_chunk
from recsys.rank.features import ItemSide, build_features
from recsys.scorers import build_scorer
from tests.conftest import hand_data


def _embeddings(n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def test_item_position_is_the_mean_relative_place_in_histories():
    # Item 0 opens both histories (0); item 2 ends the first (1) and sits mid-way in the second
    # (1/2); item 3 ends the second; item 4 is never seen.
    data = hand_data([[0, 1, 2], [0, 2, 3]], 5)
    side = ItemSide.build(data, _embeddings(5))
    np.testing.assert_allclose(side.position[:4], [0.0, 0.5, 0.75, 1.0])
    assert np.isnan(side.position[4])


def _features(data: TrainData, counts: str) -> pl.DataFrame:
    scorers = {
        "popularity": build_scorer("popularity").fit(data),
        "covisit": build_scorer("covisit").fit(data),
        "ease": build_scorer("ease", {"l2": 10.0}).fit(data),
    }
    side = ItemSide.build(data, _embeddings(data.n_items), counts=counts)
    users = np.arange(data.n_users)
    chunk = score_chunk(scorers, [data.history(int(u)) for u in users], users)
    rows = np.repeat(np.arange(len(users)), data.n_items)
    items = np.tile(np.arange(data.n_items), len(users))
    keep = np.isfinite(chunk.scores["popularity"][rows, items])  # history items are not candidates
    frame = build_features(chunk, rows[keep], items[keep], side, {"popularity": 3})
    ids = data.users.ids.to_numpy()
    return frame.with_columns(user=pl.Series(ids[frame["row"].to_numpy()])).sort("user", "item")


def test_counts_per_10k_mean_the_same_on_twice_thehand_data():
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(8, size=rng.integers(2, 6), replace=False)) for _ in range(20)]
    once, twice = hand_data(histories, 8), hand_data(histories + histories, 8)
    counted = [
        "popularity",
        "popularity_score",
        "popularity_score_gap",
        "covisit_score",
        "covisit_score_gap",
        "transition_from_last",
        "transition_to_last",
    ]
    users = once.users.ids  # the first copy of each history in ``twice`` has the same user id
    a = _features(once, "per_10k")
    b = _features(twice, "per_10k").filter(pl.col("user").is_in(users.implode()))
    assert a["item"].equals(b["item"])
    for column in counted:
        # (co-visitation breaks ties by popularity 1e-6 below one count: within atol)
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-4, atol=1e-3)
    raw_once = _features(once, "raw")
    raw_twice = _features(twice, "raw").filter(pl.col("user").is_in(users.implode()))
    np.testing.assert_allclose(raw_twice["popularity"].to_numpy(), 2 * raw_once["popularity"].to_numpy())
    np.testing.assert_allclose(
        a["popularity"].to_numpy(), raw_once["popularity"].to_numpy() * 10_000 / len(once.seq_items)
    )
    # Scores that are not counts (EASE) are left as they are.
    np.testing.assert_array_equal(a["ease_score"].to_numpy(), raw_once["ease_score"].to_numpy())


def test_unknown_count_features_are_refused():
    data = hand_data([[0, 1]], 2)
    with pytest.raises(ConfigError, match="count_features"):
        ItemSide.build(data, _embeddings(2), counts="percent")
