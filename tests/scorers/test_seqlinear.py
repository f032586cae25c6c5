"""The sequential linear scorer on hand-made histories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import ConfigError
from recsys.scorers import build_scorer
from recsys.scorers.seqlinear import (
    SeqLinearConfig,
    neighbour_similarity,
    profiles_and_targets,
    text_similarity,
)
from tests.conftest import hand_data


def test_profiles_and_targets_by_hand():
    data = hand_data([[0, 1, 2], [3, 1]], 4)
    rows = {u: data.users.index([f"u{u}"])[0] for u in (0, 1)}
    s, t = profiles_and_targets(data, SeqLinearConfig(n_recent=2, decay=0.5, n_next=2, next_decay=0.25))
    s, t = s.toarray(), t.toarray()
    start = data.seq_indptr[rows[0]]
    # u0 = 0, 1, 2: position 0 has no past (empty rows); position 1: past {0}, targets 1 and then 2.
    assert not s[start].any() and not t[start].any()
    np.testing.assert_allclose(s[start + 1], [1, 0, 0, 0])
    np.testing.assert_allclose(t[start + 1], [0, 1, 0.25, 0])
    np.testing.assert_allclose(s[start + 2], [0.5, 1, 0, 0])  # the newest item weighs 1
    np.testing.assert_allclose(t[start + 2], [0, 0, 1, 0])  # no item after the last
    start = data.seq_indptr[rows[1]]
    np.testing.assert_allclose(s[start + 1], [0, 0, 0, 1])  # u1's profile never reaches into u0's


def test_closed_form_solves_the_normal_equations():
    rng = np.random.default_rng(0)
    data = hand_data([list(rng.choice(12, size=rng.integers(2, 7), replace=False)) for _ in range(60)], 12)
    opts = {"l2": 3.0, "alpha": 0.4, "n_recent": 3, "decay": 0.7, "zero_diagonal": False}
    b = build_scorer("seqlinear", opts).fit(data).weights
    s, t = (m.toarray() for m in profiles_and_targets(data, SeqLinearConfig(**opts)))
    x = data.matrix.toarray().astype(np.float64)
    lhs = 0.4 * s.T @ s + 0.6 * x.T @ x + 3.0 * np.eye(12)
    rhs = 0.4 * s.T @ t + 0.6 * x.T @ x
    np.testing.assert_allclose(lhs @ b, rhs, atol=1e-4)


def test_zero_diagonal_is_the_constrained_optimum():
    rng = np.random.default_rng(1)
    data = hand_data([list(rng.choice(10, size=rng.integers(2, 6), replace=False)) for _ in range(50)], 10)
    opts = {"l2": 2.0, "alpha": 0.3, "zero_diagonal": True}
    b = build_scorer("seqlinear", opts).fit(data).weights.astype(np.float64)
    assert np.all(np.diag(b) == 0)
    s, t = (m.toarray() for m in profiles_and_targets(data, SeqLinearConfig(**opts)))
    x = data.matrix.toarray().astype(np.float64)
    lhs = 0.3 * s.T @ s + 0.7 * x.T @ x + 2.0 * np.eye(10)
    rhs = 0.3 * s.T @ t + 0.7 * x.T @ x
    # KKT: the gradient vanishes everywhere except on the constrained diagonal.
    grad = lhs @ b - rhs
    off = ~np.eye(10, dtype=bool)
    np.testing.assert_allclose(grad[off], 0.0, atol=1e-4)


def test_one_item_profiles_give_smoothed_next_item_rates():
    # With one item per profile, SᵀS is diagonal (how often each item has a successor) and SᵀT the
    # item → next item counts: B[k] = counts[k] / (n_k + λ). Item k is followed by k + 1 or by 9.
    rng = np.random.default_rng(2)
    histories = []
    for _ in range(300):
        k = int(rng.integers(0, 7))
        histories.append([k, k + 1] if rng.random() < 0.5 else [k, 9])
    data = hand_data(histories, 10)
    opts = {"l2": 4.0, "alpha": 1.0, "n_recent": 1, "zero_diagonal": False}
    scorer = build_scorer("seqlinear", opts).fit(data)
    row = {k: int(data.items.index([f"i{k}"])[0]) for k in range(10)}
    for k in range(7):
        starts = [h for h in histories if h[0] == k]
        to_next = sum(h[1] == k + 1 for h in starts)
        b = scorer.weights[row[k]]
        assert b[row[k + 1]] == pytest.approx(to_next / (len(starts) + 4.0), rel=1e-4)
        assert b[row[9]] == pytest.approx((len(starts) - to_next) / (len(starts) + 4.0), rel=1e-4)
        scores = scorer.score_histories([np.array([row[k]])])[0]
        assert set(np.argsort(-scores)[:2]) == {row[k + 1], row[9]}


def test_text_prior_solves_the_normal_equations_with_the_word_similarity():
    rng = np.random.default_rng(4)
    words = ["red", "blue", "filament", "glove", "caliper", "drill", "bit", "box"]
    titles = [" ".join(rng.choice(words, size=3, replace=False)) for _ in range(12)]
    data = hand_data(
        [list(rng.choice(12, size=rng.integers(2, 6), replace=False)) for _ in range(40)], 12, titles=titles
    )
    opts = {"l2": 3.0, "alpha": 0.4, "n_recent": 3, "decay": 0.7, "zero_diagonal": False, "text_prior": 0.5}
    b = build_scorer("seqlinear", opts).fit(data).weights
    w = text_similarity(data)
    assert np.all(np.diag(w) == 0) and w.max() > 0.3
    lexical = build_scorer("lexical", {"n_recent": 1}).fit(data)
    np.testing.assert_allclose(w[5, 7], lexical.score_histories([np.array([5])])[0, 7], atol=1e-6)
    s, t = (m.toarray() for m in profiles_and_targets(data, SeqLinearConfig(**opts)))
    x = data.matrix.toarray().astype(np.float64)
    lhs = 0.4 * s.T @ s + 0.6 * x.T @ x + 3.0 * np.eye(12)
    rhs = 0.4 * s.T @ t + 0.6 * x.T @ x + 3.0 * 0.5 * w
    np.testing.assert_allclose(lhs @ b, rhs, atol=1e-4)


def test_text_prior_scores_items_without_interactions_by_their_words():
    # Items 3 and 4 were never bought; item 3 shares its words with item 0, item 4 with nothing.
    titles = ["acme red filament spool", "bench vise", "hex key set", "acme blue filament spool", "tea cup"]
    data = hand_data([[0, 1], [1, 2], [2, 0], [0, 2]] * 5, 5, titles=titles)
    plain = build_scorer("seqlinear", {"l2": 10.0, "text_prior": 0.0}).fit(data)
    primed = build_scorer("seqlinear", {"l2": 10.0, "text_prior": 0.5}).fit(data)
    h = [np.array([1, 0])]
    assert plain.score_histories(h)[0, 3] == 0.0
    assert primed.score_histories(h)[0, 3] > 0.1 > abs(primed.score_histories(h)[0, 4])


def test_neighbour_similarity_by_hand():
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    w = neighbour_similarity(emb, 2)
    # Cosines: 0-1 0.8, 0-2 0, 0-3 -1, 1-2 0.6, 1-3 -0.8, 2-3 0.
    expected = np.array(
        [
            [0.0, 0.8, 0.0, 0.0],  # nearest: 1 (0.8), then 2 (0.0)
            [0.8, 0.0, 0.6, 0.0],
            [0.0, 0.6, 0.0, 0.0],  # 1 (0.6), then 0 or 3 (0.0 both)
            [0.0, 0.0, 0.0, 0.0],  # every cosine of item 3 is at most 0
        ]
    )
    np.testing.assert_allclose(w, expected, atol=1e-12)
    assert np.count_nonzero(neighbour_similarity(emb, 1)) == 3  # one per item with a positive one


def test_neighbour_prior_adds_the_embeddings_nearest_items_to_the_text_prior(monkeypatch):
    rng = np.random.default_rng(5)
    words = ["red", "blue", "filament", "glove", "caliper", "drill", "bit", "box"]
    titles = [" ".join(rng.choice(words, size=3, replace=False)) for _ in range(12)]
    data = hand_data(
        [list(rng.choice(12, size=rng.integers(2, 6), replace=False)) for _ in range(40)], 12, titles=titles
    )
    emb = rng.standard_normal((12, 4))
    opts = {"l2": 3.0, "text_prior": 0.5, "neighbour_prior": 2.0, "neighbours": 3}
    with pytest.raises(ConfigError, match="item embeddings of the scorer 'encoder'"):
        build_scorer("seqlinear", opts).fit(data)
    primed = build_scorer("seqlinear", opts).fit(data, item_embeddings=emb).weights
    words_only = build_scorer("seqlinear", {**opts, "neighbour_prior": 0.0}).fit(data).weights
    assert not np.allclose(primed, words_only)
    # The same as the words' prior with the neighbours added to it by hand.
    prior = text_similarity(data) + 2.0 * neighbour_similarity(emb, 3)
    monkeypatch.setattr("recsys.scorers.seqlinear.text_similarity", lambda _: prior.copy())
    np.testing.assert_allclose(
        build_scorer("seqlinear", {**opts, "neighbour_prior": 0.0}).fit(data).weights, primed, atol=1e-6
    )


def test_history_scores_use_only_the_newest_items():
    rng = np.random.default_rng(3)
    data = hand_data([list(rng.choice(15, size=rng.integers(2, 9), replace=False)) for _ in range(80)], 15)
    scorer = build_scorer("seqlinear", {"n_recent": 2, "decay": 0.5}).fit(data)
    h = np.array([3, 7, 1, 4])
    np.testing.assert_allclose(
        scorer.score_histories([h]), scorer.score_histories([h[-2:]]), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        scorer.score_histories([h])[0], scorer.weights[4] + 0.5 * scorer.weights[1], rtol=1e-5, atol=1e-6
    )


def test_skip_last_scores_the_history_before_its_newest_items():
    rng = np.random.default_rng(4)
    data = hand_data([list(rng.choice(15, size=rng.integers(2, 9), replace=False)) for _ in range(80)], 15)
    plain = build_scorer("seqlinear", {}).fit(data)
    skipped = build_scorer("seqlinear", {"skip_last": 1}).fit(data)
    np.testing.assert_array_equal(skipped.weights, plain.weights)  # fitting is unchanged
    users = np.arange(data.n_users)
    before = [data.history(int(u))[:-1] for u in users]
    np.testing.assert_allclose(skipped.score(users), plain.score_histories(before), rtol=1e-6, atol=1e-7)
    h = np.array([3, 7, 1, 4])
    np.testing.assert_allclose(skipped.score_histories([h]), plain.score_histories([h[:-1]]), rtol=1e-6)
    assert not np.allclose(skipped.score_histories([h]), plain.score_histories([h]))
    # A history of one item leaves nothing: every score 0, none NaN.
    np.testing.assert_array_equal(skipped.score_histories([np.array([5])]), np.zeros((1, 15), np.float32))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"l2": 0.0}, "l2"),
        ({"n_recent": 0}, "n_recent"),
        ({"decay": 1.5}, "decay"),
        ({"alpha": -0.1}, "alpha"),
        ({"text_prior": -0.01}, "text_prior"),
        ({"skip_last": -1}, "skip_last"),
        ({"neighbour_prior": -1.0}, "neighbour_prior"),
        ({"neighbours": 0}, "neighbours"),
        ({"neighbour_prior": 1.0, "text_prior": 0.0}, "part of the text prior"),
    ],
)
def test_bad_config_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        build_scorer("seqlinear", options)


def test_catalogue_too_large_refused():
    data = hand_data([[0, 1, 2]], 3)
    with pytest.raises(ConfigError, match="max_items"):
        build_scorer("seqlinear", {"max_items": 2}).fit(data)
