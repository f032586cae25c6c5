"""The simulator's click model, prices and held-out users."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.ab_simulate import SimulationConfig, clicks_for, held_out, pre_period_records, price
from recsys.errors import ConfigError


def test_without_position_bias_or_noise_only_the_real_next_item_is_clicked():
    cfg = SimulationConfig(examine_decay=0.0, noise_click=0.0, buy_given_click=1.0, noise_buy=0.0)
    events = clicks_for(["a", "b", "c"], {"b"}, cfg, np.random.default_rng(0))
    assert events == [("b", "click", None), ("b", "purchase", price("b"))]


def test_clicks_fall_with_position_as_the_examination_model_says():
    cfg = SimulationConfig(examine_decay=1.0, noise_click=0.0, buy_given_click=0.0)
    rng = np.random.default_rng(1)
    for position, expected in ((0, 1.0), (1, 0.5), (4, 0.2)):
        items = ["x"] * position + ["t"]
        rate = np.mean([bool(clicks_for(items, {"t"}, cfg, rng)) for _ in range(4000)])
        assert rate == pytest.approx(expected, abs=0.03)


def test_prices_are_fixed_per_item_and_plausible():
    prices = np.array([price(f"item-{i}") for i in range(5000)])
    assert price("item-7") == price("item-7")
    assert 15 < np.median(prices) < 25 and prices.min() > 0


def test_held_out_users_are_the_test_splits_with_their_next_items(synthetic):
    users = held_out(synthetic, 0, seed=3)
    assert users["user_id"].n_unique() == users.height
    assert all(len(n) >= 1 for n in users["next_items"].to_list())
    assert held_out(synthetic, 10, seed=3)["user_id"].to_list() == users["user_id"].to_list()[:10]
    records = pre_period_records(users.head(5), before=1000.0)
    assert len(records) == sum(len(h) for h in users.head(5)["history"].to_list())
    assert all(r["ts"] < 1000.0 and r["type"] == "purchase" for r in records)


def test_nonsense_probabilities_are_refused():
    with pytest.raises(ConfigError, match="noise_click"):
        SimulationConfig(noise_click=1.5)
