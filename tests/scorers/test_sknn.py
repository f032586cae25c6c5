"""Session-based nearest neighbours on hand-made histories with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data import TrainData
from recsys.errors import ConfigError
from recsys.scorers import build_scorer
from tests.conftest import hand_data


def _brute_force(
    data: TrainData,
    history: list[int],
    own: int | None,
    k: int,
    decay: float,
    norm: float,
    window: float = 0.0,
):
    """The module docstring's formulas, one user and one neighbour at a time."""
    x = data.matrix.toarray() > 0
    idf = np.log(data.n_users / np.maximum(x.sum(axis=0), 1))
    weight = np.zeros(data.n_items)
    for age, item in enumerate(history[::-1]):
        weight[item] += decay**age * idf[item]
    sims = (x * weight[None, :]).sum(axis=1) / np.maximum(x.sum(axis=1), 1) ** norm
    if own is not None:
        sims[own] = 0.0
    order = np.argsort(-sims, kind="stable")
    tied = bool(np.isclose(sims[order[k - 1]], sims[order[k]]))  # which of equals vote is arbitrary
    scores = np.zeros(data.n_items)
    for v in order[:k]:
        if sims[v] <= 0:
            continue
        neighbour = list(data.history(int(v)))
        shared = [(weight[i], p + 1) for p, i in enumerate(neighbour) if weight[i] > 0]
        meet = sum(w * p for w, p in shared) / sum(w for w, _ in shared)
        for p, item in enumerate(neighbour):
            scores[item] += sims[v] * (np.exp(-abs(p + 1 - meet) / window) if window else 1.0)
    return scores, tied


@pytest.mark.parametrize("window", [0.0, 2.0])
def test_scores_follow_the_formula(window):
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(15, size=rng.integers(2, 7), replace=False)) for _ in range(40)]
    data = hand_data(histories, 15)
    options = {"neighbours": 5, "decay": 0.7, "normalize": 0.5, "window": window}
    scorer = build_scorer("sknn", options).fit(data)
    users = np.arange(data.n_users)
    scores = scorer.score(users)
    exact = 0
    for u in users:
        expected, tied = _brute_force(data, list(data.history(int(u))), int(u), 5, 0.7, 0.5, window)
        if not window:  # the similarity mass is the same whichever of equal users is picked
            np.testing.assert_allclose(scores[u].sum(), expected.sum(), rtol=1e-4)
        if not tied:
            np.testing.assert_allclose(scores[u], expected, rtol=1e-4, atol=1e-6)
            exact += 1
    assert exact >= 10  # enough users without a tie at the boundary to pin every score
    anonymous = scorer.score_histories([np.array([3, 4, 9])])[0]
    expected, tied = _brute_force(data, [3, 4, 9], None, 5, 0.7, 0.5, window)
    assert not tied
    np.testing.assert_allclose(anonymous, expected, rtol=1e-4, atol=1e-6)


def test_recommends_what_the_like_minded_went_on_to():
    # Users 0-3 share items 0 and 1, then go to item 2; users 4-7 share 3 and 4, then go to 5.
    histories = [[0, 1, 2]] * 4 + [[3, 4, 5]] * 4 + [[0, 1], [3, 4]]
    data = hand_data(histories, 6)
    scorer = build_scorer("sknn", {"neighbours": 4, "window": 0.0}).fit(data)
    rows = data.users.index(pl.Series(["u8", "u9"]))
    scores = scorer.score(rows)
    assert int(np.argmax(np.where(np.isin(np.arange(6), [0, 1]), -np.inf, scores[0]))) == 2
    assert int(np.argmax(np.where(np.isin(np.arange(6), [3, 4]), -np.inf, scores[1]))) == 5


def test_a_user_is_not_their_own_neighbour():
    # u0 is the only user with item 3: were u0 its own neighbour, item 3 would score.
    data = hand_data([[0, 1, 3], [0, 1, 2], [0, 2]], 4)
    scorer = build_scorer("sknn", {"neighbours": 1}).fit(data)
    row = data.users.index(pl.Series(["u0"]))
    assert scorer.score(row)[0, 3] == 0.0
    assert scorer.score(row)[0, 2] > 0.0


def test_state_round_trip_gives_identical_scores():
    rng = np.random.default_rng(2)
    data = hand_data([list(rng.choice(12, size=rng.integers(2, 6), replace=False)) for _ in range(30)], 12)
    fitted = build_scorer("sknn", {"neighbours": 7}).fit(data)
    loaded = build_scorer("sknn", {"neighbours": 7}).set_state(fitted.get_state(), data)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(fitted.score(users), loaded.score(users))


def test_the_window_favours_what_neighbours_met_near_the_shared_items():
    # u0 = [2, 0, 3, ..., 1]: its item 0 meets the user's [0]; items 2 and 3 sit one step away,
    # item 4 two, item 1 five.
    data = hand_data([[2, 0, 3, 4, 5, 6, 1], [0]], 7)
    user = data.users.index(pl.Series(["u1"]))
    flat = build_scorer("sknn", {"window": 0.0, "idf": False}).fit(data).score(user)[0]
    near = build_scorer("sknn", {"window": 1.0, "idf": False}).fit(data).score(user)[0]
    assert flat[1] == flat[2] > 0
    np.testing.assert_allclose(near[2], near[3])
    assert near[3] > near[4] > near[1] > 0
    np.testing.assert_allclose(near[2] / near[1], np.exp(4.0))


@pytest.mark.parametrize(
    "options",
    [
        {"neighbours": 0},
        {"n_recent": 0},
        {"decay": 0.0},
        {"decay": 1.5},
        {"normalize": -0.1},
        {"window": -1.0},
        {"bogus": 1},
    ],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError):
        build_scorer("sknn", options)


def test_neighbours_tied_at_the_cut_are_the_lower_rows():
    from recsys.scorers.sknn import nearest

    sims = np.array([[0.5, 0.9, 0.5, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    cut, kept = nearest(sims, 3)
    np.testing.assert_array_equal(cut, [[1, 0, 2], [0, 1, 2]])
    np.testing.assert_allclose(kept, [[0.9, 0.5, 0.5], [0.0, 0.0, 0.0]])
