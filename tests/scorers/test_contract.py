"""The contract every scorer passes, on synthetic data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data import TrainData, leave_one_out, synthetic_dataset
from recsys.errors import ArtifactError, ConfigError, NotFittedError
from recsys.evaluation import evaluate
from recsys.scorers import SCORERS, build_scorer
from recsys.scorers.base import WideTable, user_item_scores

FAST = {
    "popularity": {},
    "covisit": {},
    "als": {"factors": 32, "iterations": 10},
    "ease": {"l2": 50.0},
    "seqlinear": {"l2": 50.0},
    "sknn": {"neighbours": 20},
    "lexical": {},
    "bpr": {"factors": 32, "iterations": 60},
    "text": {"n_recent": 3},
    "encoder": {},
    "sasrec": {"epochs": 15, "dim": 32, "threads": 1},
}


def options_for(name, embedding_cache, checkpoint):
    opts = dict(FAST[name])
    if name in ("text", "encoder", "sasrec"):
        opts["cache_dir"] = str(embedding_cache)
    if name == "encoder":
        opts["checkpoint"] = str(checkpoint)
    return opts


@pytest.fixture(scope="module")
def fitted(loo_test, embedding_cache, encoder_checkpoint):
    _, data = loo_test
    return {
        name: build_scorer(name, options_for(name, embedding_cache, encoder_checkpoint)).fit(data)
        for name in FAST
    }


def test_registry_covers_every_scorer():
    assert set(FAST) == set(SCORERS)


@pytest.mark.parametrize("name", list(SCORERS))
def test_shapes_and_types(fitted, loo_test, name):
    _, data = loo_test
    scorer = fitted[name]
    users = np.array([0, 3, 5])
    scores = scorer.score(users)
    assert scores.shape == (3, data.n_items) and scores.dtype == np.float32
    assert not np.isnan(scores).any() and not np.isposinf(scores).any()
    assert np.isfinite(scores).mean() > 0.5
    assert scorer.score(np.array([], dtype=np.int64)).shape == (0, data.n_items)


@pytest.mark.parametrize("name", list(SCORERS))
def test_item_subset_equals_full_columns(fitted, name):
    scorer = fitted[name]
    users, items = np.array([1, 2, 7]), np.array([9, 0, 4, 4])
    np.testing.assert_allclose(
        scorer.score(users, items), scorer.score(users)[:, items], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", list(SCORERS))
def test_batch_equals_per_user(fitted, name):
    scorer = fitted[name]
    users = np.arange(12)
    batch = scorer.score(users)
    single = np.vstack([scorer.score(np.array([u])) for u in users])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["als", "bpr", "text", "encoder"])
def test_vector_scorers_score_a_user_the_same_in_any_batch(fitted, name):
    # Bit for bit, so that ties (items with the same vector) stay ties and rank the same alone and
    # in a batch of any size (BLAS picks its kernels by shape).
    scorer = fitted[name]
    users = np.arange(80)
    batch = scorer.score(users)
    np.testing.assert_array_equal(batch[:12], scorer.score(users[:12]))
    np.testing.assert_array_equal(batch[:12], np.vstack([scorer.score(np.array([u])) for u in users[:12]]))


def test_user_item_scores_keep_ties_whatever_the_batch():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 96)).astype(np.float32)
    items[[7, 300, 499]] = items[3]  # four items with one vector (one text)
    users = rng.standard_normal((100, 96)).astype(np.float32)
    wide = WideTable().of(items)
    batch = user_item_scores(users, wide)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    for u in range(0, 100, 9):
        alone = user_item_scores(users[u : u + 1], wide)[0]
        np.testing.assert_array_equal(alone, batch[u])
        assert len(set(alone[[3, 7, 300, 499]].tolist())) == 1
    np.testing.assert_array_equal(user_item_scores(users[:25], wide), batch[:25])
    np.testing.assert_allclose(batch, users @ items.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(SCORERS))
def test_seeded_refit_is_identical(fitted, loo_test, embedding_cache, encoder_checkpoint, name):
    _, data = loo_test
    again = build_scorer(name, options_for(name, embedding_cache, encoder_checkpoint)).fit(data)
    np.testing.assert_allclose(
        again.score(np.arange(20)), fitted[name].score(np.arange(20)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", list(SCORERS))
def test_saved_state_restores_identical_scores(fitted, loo_test, embedding_cache, encoder_checkpoint, name):
    _, data = loo_test
    state = {k: np.array(v) for k, v in fitted[name].get_state().items()}
    restored = build_scorer(name, options_for(name, embedding_cache, encoder_checkpoint)).set_state(
        state, data
    )
    users = np.arange(25)
    np.testing.assert_array_equal(restored.score(users), fitted[name].score(users))


@pytest.mark.parametrize("name", [n for n in SCORERS if n != "bpr"])
def test_scoring_a_history_equals_scoring_its_user(fitted, loo_test, name):
    """The anonymous-session path: exact for history-based scorers, ALS folds the history in, and
    sknn finds the known user among the session's neighbours (a training user is never their own)."""
    _, data = loo_test
    users = np.arange(25)
    known = fitted[name].score(users)
    anon = fitted[name].score_histories([data.history(int(u)) for u in users])
    assert (np.isfinite(known) == np.isfinite(anon)).all()
    finite = np.isfinite(known)
    if name == "als":
        assert np.corrcoef(known[finite], anon[finite])[0, 1] > 0.999
    elif name == "sknn":
        for r, u in enumerate(users):  # the user's own votes fall on their history; one neighbour moves
            finite[r, data.history(int(u))] = False
        assert np.corrcoef(known[finite], anon[finite])[0, 1] > 0.99
    else:
        np.testing.assert_allclose(anon[finite], known[finite], rtol=1e-5, atol=1e-6)


def test_sasrec_checkpoint_loads_the_same_model(fitted, loo_test, tmp_path):
    _, data = loo_test
    path = fitted["sasrec"].save_checkpoint(tmp_path / "sasrec.pt")
    loaded = build_scorer("sasrec", {"checkpoint": str(path)}).fit(data)
    users = np.arange(20)
    np.testing.assert_array_equal(loaded.score(users), fitted["sasrec"].score(users))
    other = synthetic_dataset(n_users=50, n_items=40, seed=1)
    small = TrainData.from_split(other, leave_one_out(other, "test"))
    with pytest.raises(ArtifactError, match="40"):
        build_scorer("sasrec", {"checkpoint": str(path)}).fit(small)


def test_bpr_cannot_fold_in_a_session(fitted, loo_test):
    with pytest.raises(NotImplementedError, match="fold in"):
        fitted["bpr"].score_histories([loo_test[1].history(0)])


@pytest.mark.parametrize("name", list(SCORERS))
def test_refuses_bad_use(name, embedding_cache, encoder_checkpoint):
    with pytest.raises(ConfigError, match="no option"):
        build_scorer(name, {"not_an_option": 1})
    with pytest.raises(NotFittedError):
        build_scorer(name, options_for(name, embedding_cache, encoder_checkpoint)).score(np.array([0]))


@pytest.mark.parametrize("name", list(SCORERS))
def test_out_of_range_rows_refused(fitted, loo_test, name):
    _, data = loo_test
    with pytest.raises(IndexError):
        fitted[name].score(np.array([data.n_users]))
    with pytest.raises(IndexError):
        fitted[name].score(np.array([0]), np.array([-1]))


@pytest.mark.parametrize("name", [n for n in SCORERS if n != "popularity"])
def test_beats_popularity_clearly(fitted, loo_test, name):
    # Users follow hidden categories and item successors: every learned signal must see it.
    split, data = loo_test
    pop = evaluate(fitted["popularity"], data, split).metrics
    ours = evaluate(fitted[name], data, split).metrics
    assert ours["recall@10"] >= 2 * pop["recall@10"] and ours["ndcg@10"] >= 2 * pop["ndcg@10"], (
        name,
        ours,
        pop,
    )


def test_encoder_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        build_scorer("encoder")


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid models: popularity"):
        build_scorer("nosuchmodel")


def test_config_type_errors():
    with pytest.raises(ConfigError, match="must be int"):
        build_scorer("als", {"factors": "many"})
    with pytest.raises(ConfigError, match="decay"):
        build_scorer("covisit", {"decay": 0.0})


def test_cold_items_cf_cannot_text_can(synthetic, embedding_cache):
    from recsys.data import TrainData, cold_start_split

    split = cold_start_split(synthetic, "test", item_fraction=0.2, seed=0)
    data = TrainData.from_split(synthetic, split)
    als = build_scorer("als", FAST["als"]).fit(data)
    text = build_scorer("text", {"n_recent": 3, "cache_dir": str(embedding_cache)}).fit(data)
    assert evaluate(als, data, split).metrics["recall@50"] == 0.0
    assert evaluate(text, data, split).metrics["recall@50"] > 0.2
