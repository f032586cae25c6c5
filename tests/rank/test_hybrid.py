"""The hybrid ranking stage on the synthetic shop: leakage, rules, reasons, artifacts, equivalences."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import polars as pl
import pytest

from recsys.artifacts import load_recommender, save_recommender
from recsys.data import Dataset, TrainData, label_split, leave_one_out
from recsys.errors import ArtifactError, ConfigError
from recsys.evaluation import evaluate
from recsys.rank.features import ItemSide, feature_names
from recsys.rank.rules import Filters
from recsys.rank.training import assign_groups, label_frame, ranker_frames, train_recommender
from recsys.recommender import HybridScorer, Recommender, RecommenderConfig, fit_scorers
from recsys.scorers import build_scorer


@pytest.fixture(scope="module")
def config(hybrid_config) -> RecommenderConfig:
    return hybrid_config


@pytest.fixture(scope="module")
def trained(synthetic, config):
    split = leave_one_out(synthetic, "test")
    rec, report = train_recommender(synthetic, config, serve_split=split)
    return rec, report, split


def test_report_has_candidate_recall_and_importance(trained):
    _, report, _ = trained
    recall = report["validation"]["fold 0"]["candidate_recall"]
    assert 0.0 < recall["merged"] <= 1.0
    for source in ("als", "covisit", "text", "popularity"):
        assert recall[source]["@20"] <= recall[source]["@50"] <= recall[source]["@200"]
        # The merged set holds every source's top 20, so it recalls at least as much as each.
        assert recall["merged"] >= recall[source]["@20"] - 1e-9
    assert report["ranker"]["best_round"] >= 1
    assert set(report["importance"]) == set(trained[0].ranker.features)


def test_hybrid_beats_every_single_scorer_on_the_synthetic_shop(trained, config):
    rec, _, split = trained
    hybrid = evaluate(HybridScorer(rec).fit(rec.data), rec.data, split).metrics["ndcg@10"]
    singles = {
        name: evaluate(scorer, rec.data, split).metrics["ndcg@10"] for name, scorer in rec.scorers.items()
    }
    assert hybrid > max(singles.values()), (hybrid, singles)


def _mutate_after_labels(dataset: Dataset, fold: int, users: pl.Series | None = None) -> Dataset:
    """Every event from the fold's label onwards (fold −1: the last event alone) replaced by another
    item, for ``users`` (default: everyone): what features must not see."""
    n = pl.len().over("user_id")
    items = dataset.items["item_id"]
    shifted = items.to_frame("item_id").with_columns(other=items.shift(-7, fill_value=items[0]))
    chosen = pl.lit(True) if users is None else pl.col("user_id").is_in(users.implode())
    mutated = (
        dataset.interactions.join(shifted, on="item_id", how="left")
        .with_columns(
            pl.when((pl.col("seq") >= n - 2 - fold) & chosen)
            .then(pl.col("other"))
            .otherwise(pl.col("item_id"))
            .alias("item_id")
        )
        .drop("other")
    )
    return Dataset(name="mutated", items=dataset.items, interactions=mutated, source={})


@pytest.mark.parametrize(("fold", "history"), [(0, False), (1, False), (1, True)])
def test_features_never_see_the_label(synthetic, config, fold, history):
    config = dataclasses.replace(config, history_features=history)

    def features(dataset: Dataset) -> pl.DataFrame:
        fold_data, split = label_split(dataset, fold, "leave-one-out")
        data = TrainData.from_split(fold_data, split)
        scorers = fit_scorers(config, data)
        side = ItemSide.from_scorers(data, scorers, "text")
        frame, _ = label_frame(config, scorers, data, split, side)
        return frame

    original = features(synthetic)
    mutated = features(_mutate_after_labels(synthetic, fold))
    # Same candidates and features; only the labels differ (the targets moved).
    assert original.drop("label").equals(mutated.drop("label"))
    assert not original["label"].equals(mutated["label"])


@pytest.mark.parametrize("fold", [0, 1])
def test_grouped_features_see_other_users_later_events_but_never_the_users_own(synthetic, config, fold):
    grouped = dataclasses.replace(config, label_groups=2, label_folds=fold + 1)
    data = TrainData.from_split(synthetic, leave_one_out(synthetic, "test"))
    _, split = label_split(synthetic, fold, "leave-one-out")
    users = np.unique(data.target_pairs(split)[0])
    group = assign_groups(users, data.n_users, 2)
    assert sorted(np.bincount(group[users])) == [len(users) // 2, len(users) - len(users) // 2]
    first = np.flatnonzero(group == 0)

    def frames(dataset: Dataset) -> tuple[pl.DataFrame, pl.DataFrame]:
        frame = ranker_frames(dataset, grouped)[0].filter(pl.col("fold") == fold)
        mine = pl.col("person").is_in(pl.Series(first).implode())
        return frame.filter(mine), frame.filter(~mine)

    own, others = frames(synthetic)
    own_mutated, others_mutated = frames(_mutate_after_labels(synthetic, fold, data.users.ids.gather(first)))
    # Group 0's events from their labels on changed: their candidates and features did not, their
    # labels did; group 1's scorers learned from those events, so their features moved.
    assert own.drop("label", "later").equals(own_mutated.drop("label", "later"))
    assert not own["label"].equals(own_mutated["label"])
    assert not others.drop("label", "later").equals(others_mutated.drop("label", "later"))


def test_grouped_labels_never_learn_from_a_test_event(synthetic, config):
    grouped = dataclasses.replace(config, label_groups=3)
    original, stats, _ = ranker_frames(synthetic, grouped)
    mutated, _, _ = ranker_frames(_mutate_after_labels(synthetic, -1), grouped)
    assert original.equals(mutated)
    assert stats["fold 0"]["groups"] == 3 and stats["fold 0"]["users"] == original["person"].n_unique()
    # Groups change what the scorers learn from, not whose labels the ranker learns.
    plain, _, _ = ranker_frames(synthetic, config)
    assert plain["user"].unique().sort().equals(original["user"].unique().sort())
    with pytest.raises(ConfigError, match="label_groups"):
        dataclasses.replace(config, label_groups=0)


def test_later_marks_each_users_next_event_and_is_no_feature(synthetic, config):
    frame, _, _ = ranker_frames(synthetic, config)
    assert "later" not in feature_names(list(config.scorers), config.candidates)
    assert frame.filter(pl.col("fold") == 0)["later"].sum() == 0  # fold 0's next event is the test
    fold0, split0 = label_split(synthetic, 0, "leave-one-out")
    data = TrainData.from_split(fold0, split0)
    users, items = data.target_pairs(split0)
    next_item = dict(zip(users.tolist(), items.tolist(), strict=True))
    one = frame.filter(pl.col("fold") == 1).with_columns(pl.col("user") - (data.n_users + 1))
    marked = one.filter(pl.col("later") == 1)
    assert marked.height > 0
    assert all(next_item[u] == i for u, i in marked.select("user", "item").iter_rows())
    # Every candidate that is a user's next event is marked.
    hits = sum(next_item.get(u) == i for u, i in one.select("user", "item").iter_rows())
    assert hits == marked.height


def test_batch_recommend_equals_per_user(trained):
    rec, _, _ = trained
    users = rec.data.users.ids.head(25).to_list()
    batch = rec.recommend(users, k=10)
    for user, lst in zip(users, batch, strict=True):
        single = rec.recommend([user], k=10)[0]
        assert [r.item_id for r in lst] == [r.item_id for r in single]
        np.testing.assert_allclose([r.score for r in lst], [r.score for r in single], rtol=1e-6)


def test_recommendations_exclude_history_and_carry_reasons_naming_real_items(trained):
    rec, _, _ = trained
    titles = set(rec._titles)
    users = rec.data.users.ids.head(40).to_list()
    for user, lst in zip(users, rec.recommend(users, k=10), strict=True):
        row = int(rec.data.users.index([user])[0])
        seen = set(rec.data.items.lookup(rec.data.history(row)))
        history_titles = {rec.title(int(i)) for i in rec.data.history(row)}
        assert len(lst) == 10
        assert not seen & {r.item_id for r in lst}
        scores = [r.score for r in lst]
        assert scores == sorted(scores, reverse=True)
        for r in lst:
            assert r.reasons
            for reason in r.reasons:
                for prefix in ("similar to ", "often bought after "):
                    if reason.startswith(prefix):
                        named = reason[len(prefix) :].removesuffix(" you viewed")
                        assert named in titles and named in history_titles, reason


def test_a_ranker_with_linear_leaves_still_gives_reasons(synthetic, config, trained):
    """Reasons replace a family's features and predict again (no TreeSHAP, which LightGBM lacks for
    linear trees), so a ranker with linear leaves still explains every item it recommends."""
    from recsys.rank.training import train_ranker

    rec, _, _ = trained
    linear = dataclasses.replace(config, ranker={**config.ranker, "linear_tree": True, "linear_lambda": 1.0})
    ranker, _ = train_ranker(synthetic, linear)
    assert "is_linear=1" in ranker.boosters[0].model_to_string()
    users = rec.data.users.ids.head(10).to_list()
    before = rec.recommend(users, k=5)
    plain = rec.ranker
    rec.ranker = ranker
    try:
        lists = rec.recommend(users, k=5)
    finally:
        rec.ranker = plain
    assert [r.score for lst in lists for r in lst] != [r.score for lst in before for r in lst]
    assert all(len(lst) == 5 and all(r.reasons for r in lst) for lst in lists)


def test_rules_hold(trained):
    rec, _, _ = trained
    users = rec.data.users.ids.head(30).to_list()
    categories = rec.side.category_names
    some = sorted({str(c) for c in categories})[:2]
    banned_items = tuple(r.item_id for r in rec.recommend(users[:1], k=3)[0])
    filters = Filters(exclude_categories=(some[0],), exclude_items=banned_items, max_per_category=2)
    rows_of = dict(zip(rec.data.items.ids.to_list(), range(rec.data.n_items), strict=True))
    for lst in rec.recommend(users, k=8, filters=filters):
        cats = [str(categories[rows_of[r.item_id]]) for r in lst]
        assert some[0] not in cats
        assert not set(banned_items) & {r.item_id for r in lst}
        assert max(cats.count(c) for c in set(cats)) <= 2
    only = Filters(include_categories=(some[1],))
    for lst in rec.recommend(users, k=5, filters=only):
        assert {str(categories[rows_of[r.item_id]]) for r in lst} <= {some[1]}
    with pytest.raises(ConfigError, match="max_per_category"):
        Filters(max_per_category=0)
    with pytest.raises(ConfigError, match="list of strings"):
        Filters(exclude_items="I000001")  # type: ignore[arg-type]


def test_session_rank_and_unknown_inputs(trained):
    rec, _, _ = trained
    user = rec.data.users.ids[3]
    history = rec.data.items.lookup(rec.data.history(3))
    session = rec.recommend_session(history, k=10)
    assert len(session) == 10 and not set(history) & {r.item_id for r in session}
    # A session of a known user's items lands close to that user's own list (ALS is folded in).
    own = {r.item_id for r in rec.recommend([user], k=10)[0]}
    assert len(own & {r.item_id for r in session}) >= 5
    candidates = [r.item_id for r in rec.recommend([user], k=10)[0]][::-1]
    ranked = rec.rank(user, candidates)
    assert sorted(r.item_id for r in ranked) == sorted(candidates)
    assert [r.item_id for r in ranked] == [r.item_id for r in rec.recommend([user], k=10)[0]]
    anon = rec.recommend(["no-such-user"], k=5)[0]
    assert len(anon) == 5
    # Popularity as a cold source only: a visitor with no history still gets the popular items
    # among the candidates, a user with history only the personal sources' items.
    sources = {k: v for k, v in rec.config.candidates.items() if k != "popularity"}
    config = dataclasses.replace(rec.config, candidates=sources, cold_candidates={"popularity": 10})
    cold = Recommender(config, rec.data, rec.scorers, rec.ranker, rec.side)
    chunk, frame = cold.features([np.zeros(0, np.int64), rec.data.history(3)])
    popular = set(np.flatnonzero(chunk.top("popularity", 10)[0]).tolist())
    personal = set(np.flatnonzero(np.any([chunk.top(s, n)[1] for s, n in sources.items()], axis=0)).tolist())
    assert popular <= set(frame.filter(pl.col("row") == 0)["item"].to_list())
    assert set(frame.filter(pl.col("row") == 1)["item"].to_list()) == personal
    with pytest.raises(ConfigError, match="unknown item ids"):
        rec.rank(user, ["no-such-item"])
    with pytest.raises(ConfigError, match="k must be"):
        rec.recommend([user], k=0)


def test_artifact_round_trip_gives_identical_scores(trained, tmp_path):
    rec = trained[0]
    folder = save_recommender(rec, tmp_path / "artifact")
    loaded = load_recommender(folder)
    users = np.arange(60)
    np.testing.assert_array_equal(
        HybridScorer(rec).fit(rec.data).score(users), HybridScorer(loaded).fit(loaded.data).score(users)
    )
    ids = rec.data.users.ids.head(10).to_list()
    assert rec.recommend(ids, k=5) == loaded.recommend(ids, k=5)
    # Saving again over it replaces it atomically.
    save_recommender(loaded, folder)
    assert load_recommender(folder).recommend(ids, k=5) == rec.recommend(ids, k=5)


def test_history_features_are_learned_when_asked_for_and_survive_a_round_trip(
    trained, synthetic, config, tmp_path
):
    assert not config.history_features  # the default
    assert not {"sim_history_max", "transition_from_history"} & set(trained[1]["importance"])
    split = leave_one_out(synthetic, "test")
    with_them = dataclasses.replace(config, history_features=True)
    rec, report = train_recommender(synthetic, with_them, serve_split=split)
    assert {"sim_history_max", "transition_from_history"} <= set(report["importance"])
    loaded = load_recommender(save_recommender(rec, tmp_path / "artifact"))
    assert loaded.config.history_features
    ids = rec.data.users.ids.head(10).to_list()
    lists = rec.recommend(ids, k=5)
    assert loaded.recommend(ids, k=5) == lists
    single = rec.recommend(ids[3:4], k=5)[0]
    assert [r.item_id for r in single] == [r.item_id for r in lists[3]]
    # Reasons may name any item of the history, as the features read it.
    titles = {rec.title(i) for i in range(rec.data.n_items)}
    for user, lst in zip(ids, lists, strict=True):
        history = {rec.title(int(i)) for i in rec.data.history(int(rec.data.users.index([user])[0]))}
        for reason in (text for r in lst for text in r.reasons):
            for prefix in ("similar to ", "often bought after "):
                if reason.startswith(prefix):
                    named = reason[len(prefix) :].removesuffix(" you viewed")
                    assert named in titles and named in history, reason


def test_artifact_from_before_count_features_reads_raw_counts_and_no_cold_sources(trained, tmp_path):
    # Its ranker learned raw counts: without the field in its config it must not get shares.
    rec = trained[0]
    folder = save_recommender(rec, tmp_path / "old")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"].pop("count_features") == "per_10k"
    # from before cold_candidates too: its candidates came from ``candidates`` alone
    assert manifest["config"].pop("cold_candidates") == {"popularity": 20}
    # and before history_features (an old ranker never saw them)
    assert manifest["config"].pop("history_features") is False
    (folder / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_recommender(folder)
    assert loaded.config.count_features == "raw" and loaded.side.count_scale == 1.0
    assert loaded.config.cold_candidates == {} and not loaded.config.history_features
    assert rec.side.count_scale == pytest.approx(10_000 / len(rec.data.seq_items))


def test_a_changed_scorer_default_keeps_an_old_artifacts_meaning(synthetic, config, tmp_path):
    """seqlinear's text prior became a default: a new artifact names it; one written before gets
    the old value (no prior), so refitting its scorers learns what they learned."""
    from recsys.rank.training import train_recommender

    with_seq = dataclasses.replace(
        config, scorers={**config.scorers, "seqlinear": {"model": "seqlinear"}}, label_folds=1
    )
    rec, _ = train_recommender(synthetic, with_seq)
    folder = save_recommender(rec, tmp_path / "new")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["scorers"]["seqlinear"]["text_prior"] == 0.03
    assert load_recommender(folder).scorers["seqlinear"].config.text_prior == 0.03
    del manifest["config"]["scorers"]["seqlinear"]["text_prior"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = load_recommender(folder)
    assert old.config.scorers["seqlinear"]["text_prior"] == 0.0
    np.testing.assert_array_equal(old.scorers["seqlinear"].weights, rec.scorers["seqlinear"].weights)


def test_partial_or_mismatched_artifact_is_refused(trained, tmp_path):
    rec, _, _ = trained
    folder = save_recommender(rec, tmp_path / "a")
    (folder / "scorers" / "als.npz").unlink()
    with pytest.raises(ArtifactError, match=r"als\.npz is missing"):
        load_recommender(folder)
    folder = save_recommender(rec, tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["data"]["fingerprint"] = "0" * 16
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="fingerprint"):
        load_recommender(folder)
    with pytest.raises(ArtifactError, match="not a recommender artifact"):
        load_recommender(tmp_path)


def test_scorers_score_anonymous_histories_like_known_users(loo_test):
    _, data = loo_test
    users = np.arange(30)
    histories = [data.history(int(u)) for u in users]
    for name in ("popularity", "covisit", "als"):
        scorer = build_scorer(name).fit(data)
        known, anon = scorer.score(users), scorer.score_histories(histories)
        finite = np.isfinite(known)
        assert (finite == np.isfinite(anon)).all()
        # ALS folds the history in: one least-squares step from the same item factors.
        assert np.corrcoef(known[finite], anon[finite])[0, 1] > 0.999, name


def test_compiled_ranker_gives_lightgbms_scores_and_lists(trained, tmp_path, monkeypatch):
    rec, _, _ = trained
    users = rec.data.users.ids.head(30).to_list()
    before = rec.recommend(users, k=10)
    ranker = rec.ranker
    try:
        assert ranker.compile(tmp_path / "cache")
        objects = sorted(p.name for p in (tmp_path / "cache").iterdir())
        # each model compiled once, published whole
        assert len([n for n in objects if n.endswith(".o")]) == len(ranker.boosters), objects
        assert ranker.compile(tmp_path / "cache")  # a second load reads the cached object file
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == objects
        x = np.random.default_rng(3).standard_normal((500, len(ranker.features))).astype(np.float32)
        x[np.random.default_rng(4).random(x.shape) < 0.3] = np.nan
        fast = ranker.predict_array(x)
        compiled, ranker.compiled = ranker.compiled, None
        np.testing.assert_allclose(fast, ranker.predict_array(x), rtol=1e-9, atol=1e-12)
        ranker.compiled = compiled
        after = rec.recommend(users, k=10)
        for a, b in zip(before, after, strict=True):
            assert [r.item_id for r in a] == [r.item_id for r in b]
            assert [r.reasons for r in a] == [r.reasons for r in b]
        # A cache folder that cannot be made (a read-only home): compiled for this process alone.
        (tmp_path / "a-file").write_text("")
        ranker.compiled = None
        assert ranker.compile(tmp_path / "a-file" / "cache") and ranker.compiled is not None
    finally:
        ranker.compiled = None
    # Without lleaves the ranker keeps predicting with LightGBM.
    monkeypatch.setitem(sys.modules, "lleaves", None)
    assert not ranker.compile(tmp_path / "other") and ranker.compiled is None


def test_seqlinear_gets_the_item_embeddings_of_the_scorer_it_names(loo_test, config):
    """A scorer that needs another's item embeddings (seqlinear's neighbour prior) is fitted after
    it, whatever the order of the config; the scorers keep the config's order (the features')."""
    from recsys.scorers.seqlinear import neighbour_similarity, text_similarity

    _, data = loo_test
    seq = {"model": "seqlinear", "neighbour_prior": 1.0, "prior_from": "text", "neighbours": 5}
    primed = dataclasses.replace(config, scorers={"seqlinear": seq, **config.scorers})
    scorers = fit_scorers(primed, data)
    assert list(scorers) == list(primed.scorers)
    by_hand = build_scorer("seqlinear", {k: v for k, v in seq.items() if k != "model"}).fit(
        data, item_embeddings=scorers["text"].item_embeddings
    )
    np.testing.assert_array_equal(scorers["seqlinear"].weights, by_hand.weights)
    assert neighbour_similarity(scorers["text"].item_embeddings, 5).any() and text_similarity(data).any()
    for source in ("als", "nowhere"):
        with pytest.raises(ConfigError, match=f"prior_from='{source}' must name a text or encoder"):
            bad = {**seq, "prior_from": source}
            dataclasses.replace(config, scorers={**config.scorers, "seqlinear": bad})
