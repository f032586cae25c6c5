"""Item-side features by hand: the items' position in histories, counts per 10,000 interactions,
when the items went on sale."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from recsys.data import TrainData
from recsys.errors import ConfigError
from recsys.rank.candidates import score_chunk
from recsys.rank.features import HISTORY_FEATURES, ItemSide, build_features, feature_names, listing_order
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


def test_listing_order_places_items_oldest_to_newest_ties_sharing():
    items = pl.DataFrame({"item_id": list("abcde"), "listed_at": [30.0, 10.0, None, 20.0, 20.0]})
    np.testing.assert_allclose(listing_order(items), [1.0, 0.0, np.nan, 0.5, 0.5])
    # Against a fitted catalogue's values: between two of them, past the newest, before the oldest.
    grown = pl.DataFrame({"item_id": list("xyz"), "listed_at": [25.0, 40.0, 5.0]})
    reference = np.array([30.0, 10.0, np.nan, 20.0, 20.0])
    np.testing.assert_allclose(listing_order(grown, reference), [5 / 6, 1.0, 0.0])
    # No column, or fewer than two known values: unknown.
    assert np.isnan(listing_order(pl.DataFrame({"item_id": ["a", "b"]}))).all()


def test_item_listed_gap_is_against_the_newest_item_of_the_history():
    data = hand_data([[0, 1], [3], [2, 0]], 5)
    side = dataclasses.replace(
        ItemSide.build(data, _embeddings(5)), listed=np.array([0.2, 0.9, 0.5, np.nan, 1.0], np.float32)
    )
    scorers = {"popularity": build_scorer("popularity").fit(data)}
    chunk = score_chunk(scorers, [data.history(u) for u in range(3)], np.arange(3))
    rows, items = np.array([0, 0, 1, 2]), np.array([2, 4, 4, 1])
    frame = build_features(chunk, rows, items, side, {"popularity": 3})
    np.testing.assert_allclose(frame["item_listed"].to_numpy(), [0.5, 1.0, 1.0, 0.9])
    # User 0's newest is item 1 (0.9); user 1's only item has no date; user 2's newest is item 2.
    np.testing.assert_allclose(frame["item_listed_gap"].to_numpy(), [-0.4, 0.1, np.nan, 0.4], atol=1e-6)


def test_popularity_era_counts_the_events_from_about_the_users_time():
    # Places 0, 1/3, 2/3, 1 and unknown. An event's time is the newest place of the user's items
    # so far: item 1's events come at 1/3 (user 0), 2/3 (user 1, after item 2) and 1/3 (user 2,
    # whose first item has no date).
    data = hand_data([[0, 1], [2, 1], [4, 1]], 5, listed_at=[0.0, 10.0, 20.0, 30.0, None])
    side = ItemSide.build(data, _embeddings(5))
    np.testing.assert_allclose(side.listed, [0.0, 1 / 3, 2 / 3, 1.0, np.nan])
    one = np.ones(5, dtype=np.int64)
    when = np.array([1 / 3, 2 / 3, 0.5, 0.0, np.nan])
    np.testing.assert_allclose(side.era_counts(one, when, 0.05), [2, 1, 0, 0, np.nan])
    np.testing.assert_allclose(side.era_counts(one, when, 0.2), [2, 1, 3, 0, np.nan])
    assert side.era_counts(np.array([3]), np.array([1.0]), 0.5)[0] == 0  # never had
    undated = ItemSide.build(hand_data([[0, 1]], 2), _embeddings(2))
    assert undated.era_keys is None and np.isnan(undated.era_counts(np.array([1]), np.array([0.5]))).all()


def test_history_features_read_every_item_of_the_history():
    # User 0 met items 0, 1, 2, 3, 0, 1, 2 (seven items: beyond the last five); user 1 met item 4.
    # Transitions: 0→1 twice, 1→2 twice, 2→3, 3→0.
    data = hand_data([[0, 1, 2, 3, 0, 1, 2], [4]], 6)
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    side = ItemSide.build(data, vectors, factors=vectors[:, ::-1].copy(), counts="raw")
    scorers = {"popularity": build_scorer("popularity").fit(data)}
    chunk = score_chunk(scorers, [data.history(u) for u in range(2)], np.arange(2))
    rows, items = np.array([0, 0, 1]), np.array([4, 3, 5])
    frame = build_features(chunk, rows, items, side, {"popularity": 3}, history=True)
    plain = build_features(chunk, rows, items, side, {"popularity": 3})
    assert set(frame.columns) - set(plain.columns) == set(HISTORY_FEATURES)
    assert set(HISTORY_FEATURES) <= set(feature_names(["popularity"], {}, history=True))
    assert not set(HISTORY_FEATURES) & set(feature_names(["popularity"], {}))
    # Nearest history item: item 4 = (0, 1, 1)/√2 meets items 1 and 2 at 1/√2; item 3 is in the
    # history; item 5 = (1, 0, 1)/√2 against user 1's item 4: 1/2.
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(frame["sim_history_max"].to_numpy(), [s, 1.0, 0.5], atol=1e-6)
    # The history's mean: 2×(1,0,0) + 2×(0,1,0) + 2×(0,0,1) + (1,1,0)/√2, every coordinate but the
    # last 2 + s, the last 2.
    mean = np.array([2 + s, 2 + s, 2.0]) / np.linalg.norm([2 + s, 2 + s, 2.0])
    expected = [mean @ vectors[4], mean @ vectors[3], vectors[4] @ vectors[5]]
    np.testing.assert_allclose(frame["sim_history_centroid"].to_numpy(), expected, atol=1e-6)
    # The factors are the vectors reversed: item 5 reversed is itself, item 4 reversed is (1, 1, 0)/√2.
    np.testing.assert_allclose(frame["factor_sim_history_max"].to_numpy()[2], 0.5, atol=1e-6)
    # Into item 3: from item 2, twice in user 0's history, once each. Out of item 3: to item 0, twice.
    np.testing.assert_allclose(frame["transition_from_history"].to_numpy(), [0.0, 2.0, 0.0])
    np.testing.assert_allclose(frame["transition_to_history"].to_numpy(), [0.0, 2.0, 0.0])
    # The features over the last five items are as they were.
    np.testing.assert_array_equal(frame.select(plain.columns).to_numpy(), plain.to_numpy())
