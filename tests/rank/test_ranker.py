"""LambdaRank's training choices on small synthetic queries: the round kept, refitting, ablations."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from recsys.errors import ArtifactError, ConfigError
from recsys.rank.ranker import Ranker, RankerConfig, ndcg_at, ndcg_per_query, pooled_best, smoothed_best
from recsys.rank.training import model_features, train_ranker


def test_smoothed_best_by_hand():
    curve = np.array([0.1, 0.9, 0.1, 0.5, 0.6, 0.55, 0.5])
    assert smoothed_best(curve, 1) == 2  # the raw peak: one lucky round
    # Window 3: averages 0.5, 0.367, 0.5, 0.4, 0.55, 0.55, 0.525 → the first of the tied best, round 5.
    assert smoothed_best(curve, 3) == 5
    assert smoothed_best(np.array([0.3]), 25) == 1


def test_pooled_best_by_hand():
    # Per query: model a (3 queries) peaks at round 1, model b (1 query) at round 3; b stopped
    # after round 3, so round 4 is not pooled. Means (0.9·3 + 0.1)/4 = 0.7, (0.6·3 + 0.5)/4 =
    # 0.575, (0.5·3 + 0.9)/4 = 0.6: round 1.
    a = np.array([0.9, 0.6, 0.5, 0.95])
    b = np.array([0.1, 0.5, 0.9])
    assert pooled_best([a, b], [3, 1], 1) == 1
    assert pooled_best([a, b], [1, 3], 1) == 3  # (0.9 + 0.3) / 4 = 0.3 < (0.5 + 2.7) / 4 = 0.8
    # Window 3 over [0.7, 0.575, 0.6]: 0.6375, 0.625, 0.5875: round 1.
    assert pooled_best([a, b], [3, 1], 3) == 1


def _frame(n_users: int, seed: int) -> pl.DataFrame:
    """Queries of 20 items where the label follows feature ``a`` (plus noise); ``b`` is noise."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), 20)
    a = rng.standard_normal(len(user))
    label = _targets(user, a, rng)
    return pl.DataFrame({"user": user, "a": a, "b": rng.standard_normal(len(user)), "label": label})


def _targets(user: np.ndarray, score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1 on each user's best item by ``score`` plus noise."""
    label = np.zeros(len(user), np.int8)
    for u in np.unique(user):
        idx = np.flatnonzero(user == u)
        label[idx[np.argmax(score[idx] + 0.5 * rng.standard_normal(len(idx)))]] = 1
    return label


def test_refit_learns_every_user_for_the_chosen_rounds():
    frame = _frame(300, 0)
    config = RankerConfig(max_rounds=80, min_data_in_leaf=5, early_stopping_rounds=20, threads=1, cv_folds=0)
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


def test_the_holdout_per_labelled_user_counts_missed_targets_as_zero():
    """Users without the target among their candidates are dropped from learning; the figure per
    labelled user scales the holdout by the share that have it, so a candidate set that misses
    more targets cannot look better for it."""
    frame = _frame(300, 0)
    missed = frame.filter(pl.col("user") < 100).with_columns(pl.col("user") + 1000, label=pl.lit(0, pl.Int8))
    config = RankerConfig(max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=20, threads=1, cv_folds=0)
    full = Ranker(config, ["a", "b"]).fit(frame)
    more = Ranker(config, ["a", "b"]).fit(pl.concat([frame, missed]))
    assert full.info["useful_share"] == 1.0 and more.info["useful_share"] == 0.75
    assert full.info["holdout_ndcg@10_every_user"] == full.info["holdout_ndcg@10_ensemble"]
    assert more.info["holdout_ndcg@10_ensemble"] == pytest.approx(full.info["holdout_ndcg@10_ensemble"])
    assert more.info["holdout_ndcg@10_every_user"] == pytest.approx(
        0.75 * more.info["holdout_ndcg@10_ensemble"]
    )


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


def test_ndcg_at_by_hand():
    # Queries 1 and 2: the positive ranked second → 1/log2(3) each; query 3 has none → 1.
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.3, 0.4])
    labels = np.array([0, 1, 0, 1, 0, 0, 0])
    got = ndcg_at(scores, labels, np.array([3, 2, 2]), 10)
    assert got == pytest.approx((2 / np.log2(3) + 1.0) / 3)
    assert ndcg_at(np.array([0.2, 0.8]), np.array([1, 0]), np.array([2]), 1) == 0.0


@pytest.mark.parametrize("objective", ["rank_xendcg", "binary"])
def test_other_objectives_learn_the_order(objective):
    config = RankerConfig(
        objective=objective, max_rounds=60, min_data_in_leaf=5, threads=1, cv_folds=0, ensemble=1
    )
    ranker = Ranker(config, ["a", "b"]).fit(_frame(300, 0))
    test = _frame(100, 1)
    assert np.corrcoef(ranker.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    with pytest.raises(ConfigError, match="lambdarank, rank_xendcg, binary, not 'pairwise'"):
        RankerConfig(objective="pairwise")


def test_an_ensemble_averages_its_members_and_survives_a_round_trip(tmp_path):
    frame = _frame(300, 0)
    config = RankerConfig(
        max_rounds=60, min_data_in_leaf=5, early_stopping_rounds=20, threads=1, cv_folds=0, ensemble=3
    )
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    assert len(ranker.boosters) == 3 and len(ranker.info["best_rounds"]) == 3
    assert 0.0 < ranker.info["holdout_ndcg@10_ensemble"] <= 1.0
    test = _frame(100, 1)
    x = ranker.matrix(test)
    members = [b.predict(x, num_iteration=b.best_iteration) for b in ranker.boosters]
    assert not np.allclose(members[0], members[1])  # different seeds learn different trees
    np.testing.assert_allclose(ranker.predict(test), np.mean(members, axis=0))
    # SHAP contributions of the mean model: they sum (with the bias) to its score.
    contrib = ranker.contributions(test)
    bias = np.mean(
        [b.predict(x, num_iteration=b.best_iteration, pred_contrib=True)[:, -1] for b in ranker.boosters],
        axis=0,
    )
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, ranker.predict(test), rtol=1e-5, atol=1e-6)
    meta = ranker.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker-1.txt", "ranker-2.txt", "ranker.txt"]
    loaded = Ranker.load(tmp_path, meta)
    np.testing.assert_allclose(loaded.predict(test), ranker.predict(test))
    assert loaded.importance() == ranker.importance()
    if loaded.compile(tmp_path / "cache"):
        np.testing.assert_allclose(loaded.predict(test), ranker.predict(test), rtol=1e-6)
    # An artifact from before the ensemble: one model, no ``ensemble`` in its config.
    single = tmp_path / "single"
    single.mkdir()
    (single / "ranker.txt").write_text((tmp_path / "ranker.txt").read_text())
    old_meta = {**meta, "config": {k: v for k, v in meta["config"].items() if k != "ensemble"}}
    first = ranker.boosters[0]
    np.testing.assert_allclose(
        Ranker.load(single, old_meta).predict(test), first.predict(x, num_iteration=first.best_iteration)
    )
    # An artifact from before cross-fitting: its config names no cv_folds, and it is the
    # holdout ensemble it was, whatever the default.
    before_cv = {**meta, "config": {k: v for k, v in meta["config"].items() if k != "cv_folds"}}
    np.testing.assert_allclose(Ranker.load(tmp_path, before_cv).predict(test), ranker.predict(test))
    (tmp_path / "ranker-2.txt").unlink()
    with pytest.raises(ArtifactError, match=r"no ranker-2\.txt"):
        Ranker.load(tmp_path, meta)
    with pytest.raises(ConfigError, match="ensemble"):
        RankerConfig(ensemble=0)


def _predicts_the_mean_and_round_trips(ranker: Ranker, folder, n_models: int) -> None:
    """The prediction is the members' mean; saved as ``n_models`` files, loaded, it predicts the same."""
    test = _frame(100, 1)
    members = [b.predict(ranker.matrix(test), num_iteration=b.best_iteration) for b in ranker.boosters]
    np.testing.assert_allclose(ranker.predict(test), np.mean(members, axis=0))
    meta = ranker.save(folder)
    assert len(list(folder.glob("ranker*.txt"))) == n_models
    np.testing.assert_allclose(Ranker.load(folder, meta).predict(test), ranker.predict(test))


def test_cross_fitting_scores_every_user_out_of_fold_and_averages_its_parts(tmp_path):
    """cv_folds = 4: four models, each stopped on the quarter of the users it did not learn from;
    the validation figure is NDCG@10 of every user's out-of-fold score (recomputed here from the
    members and the parts), the prediction the members' mean; saved and loaded as four models."""
    frame = _frame(200, 0)
    config = RankerConfig(max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=10, threads=1, cv_folds=4)
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    info = ranker.info
    assert len(ranker.boosters) == 4 and len(info["best_rounds"]) == 4
    assert info["holdout_users"] == info["train_users"] == 200 and info["useful_share"] == 1.0
    users = np.arange(200)
    part = np.random.default_rng(0).permutation(200) % 4
    x = ranker.matrix(frame)
    row_part = part[frame["user"].to_numpy()]
    oof = np.zeros(frame.height)
    for m, booster in enumerate(ranker.boosters):
        held = row_part == m
        oof[held] = booster.predict(x[held], num_iteration=booster.best_iteration)
    groups = np.bincount(frame["user"].to_numpy(), minlength=len(users))
    assert info["holdout_ndcg@10"] == pytest.approx(ndcg_at(oof, frame["label"].to_numpy(), groups, 10))
    assert info["holdout_ndcg@10_every_user"] == info["holdout_ndcg@10"]
    assert info["holdout_ndcg@10"] > 0.6  # the label follows a: far above chance (about 0.3)
    _predicts_the_mean_and_round_trips(ranker, tmp_path, 4)
    for bad in (1, -2):
        with pytest.raises(ConfigError, match="cv_folds"):
            RankerConfig(cv_folds=bad)
    with pytest.raises(ConfigError, match="cv_folds = 6 needs 12 or more users"):
        Ranker(dataclasses.replace(config, cv_folds=6), ["a", "b"]).fit(_frame(11, 2))


def test_repeated_cross_fitting_averages_every_repeat_out_of_fold(tmp_path):
    """cv_repeats = 2: the parts are drawn again (seed + 1) and four more models learned; each
    user's out-of-fold score is the mean of the two models, one per repeat, that did not learn
    from them; the prediction is the mean of all eight, saved and loaded as eight models."""
    frame = _frame(200, 0)
    config = RankerConfig(
        max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=10, threads=1, cv_folds=4, cv_repeats=2
    )
    assert config.members == 8
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    assert len(ranker.boosters) == 8 and ranker.info["cv_repeats"] == 2
    x = ranker.matrix(frame)
    users = frame["user"].to_numpy()
    oof = np.zeros(frame.height)
    for repeat in range(2):
        row_part = (np.random.default_rng(repeat).permutation(200) % 4)[users]
        for m in range(4):
            booster = ranker.boosters[repeat * 4 + m]
            held = row_part == m
            oof[held] += booster.predict(x[held], num_iteration=booster.best_iteration) / 2
    groups = np.bincount(users, minlength=200)
    expected = ndcg_at(oof, frame["label"].to_numpy(), groups, 10)
    assert ranker.info["holdout_ndcg@10"] == pytest.approx(expected)
    # the second repeat's parts differ from the first's: its models are not copies
    assert not np.allclose(ranker.boosters[0].predict(x), ranker.boosters[4].predict(x))
    _predicts_the_mean_and_round_trips(ranker, tmp_path, 8)
    with pytest.raises(ConfigError, match="cv_repeats"):
        RankerConfig(cv_repeats=0)


def test_pooled_rounds_give_every_cross_fitted_model_the_best_round_of_their_mean_curve(
    tmp_path, monkeypatch
):
    """cv_rounds = "pooled": the four models keep one round, the best of their holdout curves
    averaged per query, and the out-of-fold figure scores each part at that round."""
    frame = _frame(200, 0)
    config = RankerConfig(
        max_rounds=60, min_data_in_leaf=5, early_stopping_rounds=10, threads=1, cv_folds=4, smooth_rounds=1
    )
    each = Ranker(config, ["a", "b"]).fit(frame)
    curves: list[np.ndarray] = []
    train_member = Ranker._train_member

    def recording(self, *args, **kwargs):
        booster, best, curve = train_member(self, *args, **kwargs)
        curves.append(curve)
        return booster, best, curve

    monkeypatch.setattr(Ranker, "_train_member", recording)
    pooled = Ranker(dataclasses.replace(config, cv_rounds="pooled"), ["a", "b"]).fit(frame)
    rounds = pooled.info["best_rounds"]
    assert len(set(rounds)) == 1 and len(set(each.info["best_rounds"])) > 1
    users = frame["user"].to_numpy()
    row_part = (np.random.default_rng(0).permutation(200) % 4)[users]
    queries = [len(np.unique(users[row_part == m])) for m in range(4)]
    assert rounds[0] == pooled_best(curves, queries, 1)
    # The same trees as "each" (the same data and seeds), cut at the pooled round, and the
    # out-of-fold figure scores each part there.
    x = pooled.matrix(frame)
    oof = np.zeros(frame.height)
    for m, (p, e) in enumerate(zip(pooled.boosters, each.boosters, strict=True)):
        kept = rounds[0]
        np.testing.assert_allclose(p.predict(x, num_iteration=kept), e.predict(x, num_iteration=kept))
        held = row_part == m
        oof[held] = p.predict(x[held], num_iteration=rounds[0])
    expected = ndcg_at(oof, frame["label"].to_numpy(), np.bincount(users, minlength=200), 10)
    assert pooled.info["holdout_ndcg@10"] == pytest.approx(expected)
    _predicts_the_mean_and_round_trips(pooled, tmp_path, 4)
    with pytest.raises(ConfigError, match="cv_rounds"):
        RankerConfig(cv_rounds="mean")
    with pytest.raises(ConfigError, match="needs gbdt"):
        RankerConfig(cv_rounds="pooled", boosting="dart")


def test_cross_fitting_keeps_a_persons_label_folds_in_one_part():
    """With a ``person`` column, cross-fitting draws its parts over people: a person's two queries
    (label folds 0 and 1) are scored by the same model, which learned from neither. The out-of-fold
    NDCG@10 of every labelled query is kept (``oof``), those without their target among the
    candidates as 0, and so is each fold's figure and each useful candidate's out-of-fold score."""
    frame = _frame(200, 0).with_columns(
        person=pl.col("user") % 100,
        fold=(pl.col("user") // 100).cast(pl.Int8),
        item=pl.int_range(pl.len()) % 20,
    )
    # 10 queries of fold 1 with no target among their candidates: labelled, not useful.
    frame = frame.with_columns(label=pl.when(pl.col("user") >= 190).then(0).otherwise(pl.col("label")))
    config = RankerConfig(max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=10, threads=1, cv_folds=4)
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    useful = frame.filter(pl.col("user") < 190)
    part = (np.random.default_rng(0).permutation(100) % 4)[useful["person"].to_numpy()]
    x = ranker.matrix(useful)
    oof = np.zeros(useful.height)
    for m, booster in enumerate(ranker.boosters):
        oof[part == m] = booster.predict(x[part == m], num_iteration=booster.best_iteration)
    groups = np.bincount(useful["user"].to_numpy())
    per_query = ndcg_per_query(oof, useful["label"].to_numpy(), groups, 10)
    assert ranker.oof is not None  # every labelled query, the 10 without their target at 0
    assert ranker.oof["user"].to_list() == list(range(200))
    assert ranker.oof["fold"].to_list() == [0] * 100 + [1] * 100
    np.testing.assert_allclose(ranker.oof["ndcg@10"].to_numpy(), np.r_[per_query, np.zeros(10)])
    assert ranker.info["holdout_ndcg@10"] == pytest.approx(per_query.mean())
    # and each useful candidate's out-of-fold score, keyed by query and item
    assert ranker.oof_scores is not None and ranker.oof_scores.columns == ["user", "item", "score"]
    scored = useful.with_columns(expected=pl.Series(oof)).join(ranker.oof_scores, on=["user", "item"])
    assert scored.height == useful.height
    np.testing.assert_allclose(scored["score"].to_numpy(), scored["expected"].to_numpy())
    by_fold = ranker.info["holdout_ndcg@10_every_user_by_fold"]
    assert by_fold == pytest.approx([per_query[:100].mean(), per_query[100:].sum() / 100])
    # The holdout scheme keeps no out-of-fold scores.
    holdout = Ranker(dataclasses.replace(config, cv_folds=0, ensemble=1), ["a", "b"]).fit(frame)
    assert holdout.oof is None and holdout.oof_scores is None
    assert "holdout_ndcg@10_every_user_by_fold" not in holdout.info


def _two_signals(n_users: int, seed: int) -> pl.DataFrame:
    """Queries of 20 items: the target is the best by ``a``, the later event (another item) the best by
    ``b``; queries alternate between fold 0 and fold 1."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), 20)
    a, b = rng.standard_normal(len(user)), rng.standard_normal(len(user))
    label, later = np.zeros(len(user), np.int8), np.zeros(len(user), np.int8)
    for u in range(n_users):
        idx = np.flatnonzero(user == u)
        target = idx[np.argmax(a[idx])]
        label[target] = 1
        rest = idx[idx != target]
        later[rest[np.argmax(b[rest])]] = 1
    return pl.DataFrame(
        {"user": user, "fold": (user % 2).astype(np.int8), "a": a, "b": b, "label": label, "later": later}
    )


def test_later_gain_teaches_the_next_event_and_the_holdout_counts_the_target():
    frame = _two_signals(300, 0)
    config = RankerConfig(
        max_rounds=60,
        min_data_in_leaf=5,
        early_stopping_rounds=60,
        threads=1,
        cv_folds=0,
        ensemble=1,
        later_gain=0.0,
    )
    plain = Ranker(config, ["a", "b"]).fit(frame)
    graded = Ranker(dataclasses.replace(config, later_gain=0.5), ["a", "b"]).fit(frame)
    test = _two_signals(100, 1)
    b = test["b"].to_numpy()
    # Only the graded model has learned that b matters (the later event), and both still follow a.
    assert np.corrcoef(graded.predict(test), b)[0, 1] > np.corrcoef(plain.predict(test), b)[0, 1] + 0.1
    assert np.corrcoef(graded.predict(test), test["a"].to_numpy())[0, 1] > 0.5
    # The holdout scores the target alone: both models are judged on the same labels.
    y = test["label"].to_numpy()
    groups = np.full(100, 20)
    assert ndcg_at(plain.predict(test), y, groups, 10) >= ndcg_at(graded.predict(test), y, groups, 10) - 0.05
    with pytest.raises(ConfigError, match="later_gain must be in"):
        RankerConfig(later_gain=1.5)
    # A frame without the later column has no later events: the targets alone, as plain learns.
    # So does the pointwise objective, whatever the gain.
    alone = Ranker(dataclasses.replace(config, later_gain=0.5), ["a", "b"]).fit(frame.drop("later"))
    np.testing.assert_allclose(alone.predict(test), plain.predict(test), rtol=1e-6)
    binary = dataclasses.replace(config, objective="binary")
    np.testing.assert_allclose(
        Ranker(binary, ["a", "b"]).fit(frame).predict(test),
        Ranker(dataclasses.replace(binary, later_gain=0.0), ["a", "b"]).fit(frame).predict(test),
    )


def test_fold_weights_choose_which_folds_teach():
    frame = _two_signals(400, 2)
    # Fold 1's targets follow -a instead of a.
    flipped = frame.with_columns(
        pl.when(pl.col("fold") == 1).then(-pl.col("a")).otherwise(pl.col("a")).alias("signal")
    )
    best = flipped.group_by("user").agg(pl.col("signal").arg_max().alias("at"))
    flipped = (
        flipped.with_columns(pl.int_range(pl.len()).over("user").alias("pos"))
        .join(best, on="user")
        .with_columns(label=(pl.col("pos") == pl.col("at")).cast(pl.Int8))
        .drop("signal", "pos", "at")
        .sort("user")
    )
    config = RankerConfig(
        max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=40, threads=1, cv_folds=0, ensemble=1
    )
    test = _frame(100, 3)
    a = test["a"].to_numpy()
    first = Ranker(dataclasses.replace(config, fold_weights=(1.0, 0.0)), ["a", "b"]).fit(flipped)
    second = Ranker(dataclasses.replace(config, fold_weights=(0.0, 1.0)), ["a", "b"]).fit(flipped)
    assert np.corrcoef(first.predict(test), a)[0, 1] > 0.5
    assert np.corrcoef(second.predict(test), a)[0, 1] < -0.5
    with pytest.raises(ConfigError, match="1 weights for 2 label folds"):
        Ranker(dataclasses.replace(config, fold_weights=(1.0,)), ["a", "b"]).fit(flipped)
    with pytest.raises(ConfigError, match="fold_weights must be a list"):
        RankerConfig(fold_weights=(1.0, -1.0))


def test_tree_shape_options_reach_lightgbm():
    """``extra_trees``, ``path_smooth`` and ``max_bin`` are the trained models' parameters; with 15
    bins a feature is split at no more than 14 places; the model still learns the order."""
    config = RankerConfig(
        max_rounds=40, min_data_in_leaf=5, threads=1, cv_folds=0, ensemble=1, refit_all=False,
        extra_trees=True, path_smooth=5.0, max_bin=15,
    )  # fmt: skip
    ranker = Ranker(config, ["a", "b"]).fit(_frame(300, 0))
    text = ranker.boosters[0].model_to_string()
    assert "[extra_trees: 1]" in text and "[path_smooth: 5]" in text and "[max_bin: 15]" in text
    thresholds: set[float] = set()

    def walk(node: dict) -> None:
        if "split_feature" in node:
            if node["split_feature"] == 0:
                thresholds.add(node["threshold"])
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in ranker.boosters[0].dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    assert 1 <= len(thresholds) <= 14
    test = _frame(100, 1)
    assert np.corrcoef(ranker.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    for bad in ({"path_smooth": -1.0}, {"max_bin": 1}):
        with pytest.raises(ConfigError, match="path_smooth >= 0 and max_bin >= 2"):
            RankerConfig(**bad)  # type: ignore[arg-type]


def test_linear_trees_learn_the_order_and_are_not_compiled():
    """``linear_tree`` gives leaves with slopes: the model learns the order, predicts with LightGBM
    (lleaves does not compile such trees) and refuses TreeSHAP contributions clearly."""
    config = RankerConfig(
        max_rounds=40, min_data_in_leaf=5, threads=1, cv_folds=0, ensemble=1, refit_all=False,
        linear_tree=True, linear_lambda=1.0,
    )  # fmt: skip
    frame = _frame(300, 0)
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    text = ranker.boosters[0].model_to_string()
    assert "[linear_tree: 1]" in text and "is_linear=1" in text
    test = _frame(100, 1)
    assert np.corrcoef(ranker.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    assert ranker.compile() is False and ranker.compiled is None
    with pytest.raises(ConfigError, match="linear trees"):
        ranker.contributions(test)
    with pytest.raises(ConfigError, match="linear_lambda"):
        RankerConfig(linear_lambda=-1.0)


def test_dart_keeps_the_model_its_holdout_scored_at_the_round_kept():
    """DART learns ``max_rounds`` rounds (no early stopping), then again for the round kept: the same
    seed gives the same trees, so the kept model scores its holdout as the curve said at that
    round, and predicts with all of its trees."""
    frame = _frame(200, 0)
    config = RankerConfig(
        max_rounds=40,
        min_data_in_leaf=5,
        threads=1,
        cv_folds=4,
        smooth_rounds=5,
        boosting="dart",
        drop_rate=0.2,
    )
    ranker = Ranker(config, ["a", "b"]).fit(frame)
    assert "[boosting: dart]" in ranker.boosters[0].model_to_string()
    part = np.random.default_rng(0).permutation(200) % 4
    row_part = part[frame["user"].to_numpy()]
    x, label = ranker.matrix(frame), frame["label"].to_numpy()
    for m, (booster, best) in enumerate(zip(ranker.boosters, ranker.info["best_rounds"], strict=True)):
        assert booster.num_trees() == best
        held = row_part == m
        groups = np.unique(frame["user"].to_numpy()[held], return_counts=True)[1]
        score = ndcg_at(booster.predict(x[held]), label[held], groups, 10)
        assert score == pytest.approx(ranker.info["holdout_ndcg@10_members"][m], abs=1e-6)
    test = _frame(100, 1)
    assert np.corrcoef(ranker.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    for bad in ({"boosting": "goss"}, {"drop_rate": 0.0}):
        with pytest.raises(ConfigError, match=r"boosting|drop_rate"):
            RankerConfig(**bad)  # type: ignore[arg-type]


def test_pair_weight_options_reach_lightgbm():
    """``sigmoid`` and ``lambdarank_norm`` are LambdaRank's own parameters in the trained model."""
    config = RankerConfig(
        max_rounds=20, min_data_in_leaf=5, threads=1, cv_folds=0, ensemble=1, refit_all=False,
        sigmoid=2.0, lambdarank_norm=False,
    )  # fmt: skip
    ranker = Ranker(config, ["a", "b"]).fit(_frame(300, 0))
    text = ranker.boosters[0].model_to_string()
    assert "[sigmoid: 2]" in text and "[lambdarank_norm: 0]" in text
    test = _frame(100, 1)
    assert np.corrcoef(ranker.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    with pytest.raises(ConfigError, match="sigmoid must be positive"):
        RankerConfig(sigmoid=0.0)


def test_monotone_features_act_one_way():
    """``monotone`` holds a feature's effect to one direction: with ``b`` (noise) held increasing,
    raising b alone never lowers a candidate's score, and ``a`` still orders the queries."""
    frame = _frame(200, 0)
    config = RankerConfig(max_rounds=40, min_data_in_leaf=5, early_stopping_rounds=10, threads=1, cv_folds=4)
    free = Ranker(config, ["a", "b"]).fit(frame)
    held = Ranker(dataclasses.replace(config, monotone={"b": 1, "a": 1}), ["a", "b"]).fit(frame)
    grid = np.linspace(-3, 3, 61)
    a, b = np.meshgrid(np.linspace(-2, 2, 9), grid, indexing="ij")  # rows: a fixed, b rising
    points = pl.DataFrame({"a": a.ravel(), "b": b.ravel()})
    scores = held.predict(points).reshape(a.shape)
    assert (np.diff(scores, axis=1) >= -1e-12).all()  # along b, never down
    assert (np.diff(scores, axis=0) >= -1e-12).all()  # along a too
    free_scores = free.predict(points).reshape(a.shape)
    assert (np.diff(free_scores, axis=1) < -1e-6).any()  # unconstrained, the noise feature wiggles
    test = _frame(100, 1)
    assert np.corrcoef(held.predict(test), test["a"].to_numpy())[0, 1] > 0.6
    for bad in ({"a": 2}, {"a": True}, ["a"]):
        with pytest.raises(ConfigError, match="monotone"):
            RankerConfig(monotone=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"monotone names \['c'\]"):
        Ranker(dataclasses.replace(config, monotone={"c": 1}), ["a", "b"]).fit(frame)


def test_categorical_codes_learn_a_lift_per_category(tmp_path):
    """``categorical`` reads a code column as categories: the target falls in categories 3 and 7
    (not neighbours in code order), so candidates of those two score above every other category
    at the same ``a``, and the saved ranker scores the same."""
    rng = np.random.default_rng(0)
    frame = _frame(300, 0)
    code = rng.integers(-1, 10, frame.height)  # -1: unknown
    label = _targets(frame["user"].to_numpy(), frame["a"].to_numpy() + 1.5 * np.isin(code, [3, 7]), rng)
    frame = frame.with_columns(category=pl.Series(code), label=pl.Series(label))
    config = RankerConfig(
        max_rounds=60,
        min_data_in_leaf=5,
        early_stopping_rounds=20,
        threads=1,
        cv_folds=3,
        categorical=["category"],
    )
    ranker = Ranker(config, ["a", "category"]).fit(frame)
    grid = pl.DataFrame({"a": np.zeros(11), "category": np.arange(-1, 10)})
    scores = ranker.predict(grid)
    lifted = np.isin(grid["category"].to_numpy(), [3, 7])
    assert scores[lifted].min() > scores[~lifted].max()
    meta = ranker.save(tmp_path)
    loaded = Ranker.load(tmp_path, meta)
    assert loaded.config.categorical == ("category",)
    np.testing.assert_array_equal(loaded.predict(grid), scores)
    with pytest.raises(ConfigError, match=r"categorical names \['category'\]"):
        Ranker(config, ["a"])
    with pytest.raises(ConfigError, match="list of column names"):
        RankerConfig(categorical="category")  # type: ignore[arg-type]


def test_only_code_columns_are_read_as_categories(synthetic, hybrid_config):
    config = dataclasses.replace(hybrid_config, ranker={**hybrid_config.ranker, "categorical": ["brand"]})
    assert model_features(config)[-1] == "brand" and "category" not in model_features(config)
    bad = dataclasses.replace(hybrid_config, ranker={**hybrid_config.ranker, "categorical": ["popularity"]})
    with pytest.raises(ConfigError, match=r"categorical names \['popularity'\].*category, brand, item"):
        model_features(bad)
