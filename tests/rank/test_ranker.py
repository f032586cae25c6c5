"""LambdaRank's training choices on small synthetic queries: the round kept, refitting, ablations."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from recsys.errors import ConfigError
from recsys.rank.ranker import Ranker, RankerConfig, smoothed_best
from recsys.rank.training import train_ranker


def test_smoothed_best_by_hand():
    curve = np.array([0.1, 0.9, 0.1, 0.5, 0.6, 0.55, 0.5])
    assert smoothed_best(curve, 1) == 2  # the raw peak: one lucky round
    # Window 3: averages 0.5, 0.367, 0.5, 0.4, 0.55, 0.55, 0.525 → the first of the tied best, round 5.
    assert smoothed_best(curve, 3) == 5
    assert smoothed_best(np.array([0.3]), 25) == 1


def _frame(n_users: int, seed: int) -> pl.DataFrame:
    """Queries of 20 items where the label follows feature ``a`` (plus noise); ``b`` is noise."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), 20)
    a = rng.standard_normal(len(user))
    label = np.zeros(len(user), np.int8)
    for u in range(n_users):
        idx = np.flatnonzero(user == u)
        label[idx[np.argmax(a[idx] + 0.5 * rng.standard_normal(20))]] = 1
    return pl.DataFrame({"user": user, "a": a, "b": rng.standard_normal(len(user)), "label": label})


def test_refit_learns_every_user_for_the_chosen_rounds():
    frame = _frame(300, 0)
    config = RankerConfig(max_rounds=80, min_data_in_leaf=5, early_stopping_rounds=20, threads=1)
    plain = Ranker(dataclasses.replace(config, smooth_rounds=1, refit_all=False), ["a", "b"]).fit(frame)
    refit = Ranker(dataclasses.replace(config, smooth_rounds=5, refit_all=True), ["a", "b"]).fit(frame)
    assert "refit_users" not in plain.info and plain.info["best_round"] == plain.info["raw_best_round"]
    assert refit.info["refit_users"] == 300 and refit.info["train_users"] < 300
    assert refit.booster.num_trees() == refit.info["best_round"]
    # Both order a fresh query set by feature a.
    test = _frame(100, 1)
    for ranker in (plain, refit):
        scores = ranker.predict(test)
        assert np.corrcoef(scores, test["a"].to_numpy())[0, 1] > 0.6


def test_excluded_features_leave_the_model(synthetic, hybrid_config):
    config = dataclasses.replace(
        hybrid_config, ranker={**hybrid_config.ranker, "exclude_features": ["sim_mean", "factor_sim_last"]}
    )
    ranker, report = train_ranker(synthetic, config)
    assert "sim_mean" not in ranker.features and "factor_sim_last" not in ranker.features
    assert "sim_max" in ranker.features and set(report["importance"]) == set(ranker.features)
    bad = dataclasses.replace(hybrid_config, ranker={**hybrid_config.ranker, "exclude_features": ["nope"]})
    with pytest.raises(ConfigError, match="unknown features"):
        train_ranker(synthetic, bad)
    with pytest.raises(ConfigError, match="list of feature names"):
        RankerConfig(exclude_features="sim_mean")  # type: ignore[arg-type]
