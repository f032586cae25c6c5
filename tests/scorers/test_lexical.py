"""The lexical scorer on hand-made item texts, against the module docstring's formula written out."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from recsys.errors import ArtifactError, ConfigError
from recsys.scorers import build_scorer
from tests.conftest import hand_data

TITLES = [
    "Hatchbox PLA filament 1.75 mm red",  # 0
    "Hatchbox PLA filament 1.75 mm blue",  # 1
    "Hatchbox ABS filament 3 mm black",  # 2
    "Digital caliper 150 mm",  # 3
    "Nitrile gloves large",  # 4
    "Nitrile gloves small box",  # 5
    "Filament dryer box",  # 6
    "Safety glasses",  # 7
]
HISTORIES = [[3, 0], [4, 7], [6, 2, 5]]


def _vectors(titles: list[str], max_df: float) -> tuple[np.ndarray, list[str]]:
    """Unit TF-IDF rows by the definition: (1 + log tf) × (log((1 + n) / (1 + df)) + 1)."""
    docs = [[w for w in t.lower().replace(".", " ").split()] for t in titles]
    n = len(docs)
    words = sorted({w for d in docs for w in d})
    df = {w: sum(w in d for d in docs) for w in words}
    words = [w for w in words if df[w] <= max_df * n]
    x = np.zeros((n, len(words)))
    for i, d in enumerate(docs):
        for j, w in enumerate(words):
            tf = d.count(w)
            if tf:
                x[i, j] = (1 + math.log(tf)) * (math.log((1 + n) / (1 + df[w])) + 1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12), words


def _brute_force(titles, history, n_recent, decay, max_df):
    x, _ = _vectors(titles, max_df)
    scores = np.zeros(len(titles))
    for k, item in enumerate(history[::-1][:n_recent]):
        scores += decay**k * (x @ x[item])
    return scores


@pytest.fixture()
def data():
    return hand_data(HISTORIES, len(TITLES), titles=TITLES)


@pytest.mark.parametrize(("n_recent", "decay", "max_df"), [(1, 0.5, 1.0), (2, 0.5, 0.5), (5, 0.7, 0.3)])
def test_scores_follow_the_formula(data, n_recent, decay, max_df):
    scorer = build_scorer("lexical", {"n_recent": n_recent, "decay": decay, "max_df": max_df}).fit(data)
    got = scorer.score(np.arange(len(HISTORIES)))
    for u, h in enumerate(HISTORIES):
        np.testing.assert_allclose(got[u], _brute_force(TITLES, h, n_recent, decay, max_df), atol=1e-5)


def test_the_same_product_line_comes_first(data):
    scorer = build_scorer("lexical", {"n_recent": 1}).fit(data)
    scores = scorer.score(np.array([0]))[0]  # last item: the red PLA filament
    scores[HISTORIES[0]] = -np.inf
    assert int(np.argmax(scores)) == 1  # the blue one
    assert scores[2] > scores[6] > scores[4] == 0.0  # same brand and material > shared word > nothing


def test_ubiquitous_words_are_left_out(data):
    scorer = build_scorer("lexical", {"max_df": 0.3}).fit(data)
    _, kept = _vectors(TITLES, 0.3)
    assert set(scorer.vocab) == set(kept)
    assert "filament" not in scorer.vocab and "mm" not in scorer.vocab  # in 4 of 8 items


def test_new_items_are_scored_from_their_words(data):
    from recsys.live import _extend_data, _merge_frames

    scorer = build_scorer("lexical", {"n_recent": 1}).fit(data)
    before = scorer.score(np.arange(3))
    frame = _merge_frames(
        data.item_frame,
        pl.DataFrame({"item_id": ["i8", "i0"], "title": ["Hatchbox PLA filament green glitter", "Caliper"]}),
    )
    grown = _extend_data(data, frame)
    changed = scorer.with_items(grown, np.array([8, 0]))
    after = changed.score(np.arange(3))
    assert after.shape == (3, 9)
    x, words = _vectors(TITLES, 0.5)
    new = np.zeros(len(words))  # "glitter" and "green" are unknown words: they add nothing
    known = ["hatchbox", "pla", "filament"]
    new[[words.index(w) for w in known if w in words]] = [
        x[1, words.index(w)] for w in known if w in words
    ]  # one count each, the fitted weights, as in item 1
    new /= np.linalg.norm(new)
    np.testing.assert_allclose(after[1, 8], x[7] @ new, atol=1e-6)  # user 1's last item: glasses
    np.testing.assert_allclose(after[2, 8], x[5] @ new, atol=1e-6)
    assert after[0, 8] == 0.0 and after[0, 3] > 0  # user 0's last item, now "Caliper", matches item 3
    np.testing.assert_allclose(after[1, 1:8], before[1, 1:8])  # untouched items keep their scores
    assert scorer.vectors.shape[0] == 8  # the fitted scorer is unchanged


def test_state_round_trip_and_a_mismatched_catalogue(data):
    scorer = build_scorer("lexical").fit(data)
    state = {k: np.array(v) for k, v in scorer.get_state().items()}
    restored = build_scorer("lexical").set_state(state, data)
    np.testing.assert_array_equal(restored.score(np.arange(3)), scorer.score(np.arange(3)))
    assert restored.vocab == scorer.vocab
    other = hand_data(HISTORIES, len(TITLES) + 1, titles=[*TITLES, "Extra item"])
    with pytest.raises(ArtifactError, match="8 items"):
        build_scorer("lexical").set_state(state, other)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"n_recent": 0}, "n_recent"), ({"decay": 0.0}, "decay"), ({"max_df": 1.5}, "max_df")],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        build_scorer("lexical", options)
