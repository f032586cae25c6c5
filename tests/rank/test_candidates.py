"""Ranks from sorted rows equal the catalogue-wide stable argsort, ties and -inf included; merged
candidates."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.rank import candidates
from recsys.rank.candidates import ScoredChunk, full_ranks, merge_candidates


def _chunk(scores: np.ndarray) -> ScoredChunk:
    return ScoredChunk([np.zeros(0, np.int64)] * len(scores), {"s": scores}, {"s": scores})


@pytest.mark.parametrize("kind", ["distinct", "integer ties", "many tied values", "all equal", "mostly -inf"])
@pytest.mark.parametrize("table", [True, False])
def test_pair_ranks_and_top_equal_full_ranks(kind: str, table: bool, monkeypatch) -> None:
    if not table:  # every tied row through the sorted-keys path
        monkeypatch.setattr(candidates, "TIE_TABLE_MAX", 0)
    rng = np.random.default_rng(7)
    shape = (5, 997)
    if kind == "distinct":
        scores = rng.standard_normal(shape).astype(np.float32)
    elif kind == "integer ties":  # popularity counts: most items share a score with others
        scores = np.floor(rng.exponential(2.0, shape)).astype(np.float32)
    elif kind == "many tied values":  # hundreds of shared values in a row: the sorted-keys path
        scores = np.floor(rng.uniform(0, 300, shape)).astype(np.float32)
    elif kind == "all equal":
        scores = np.ones(shape, dtype=np.float32)
    else:
        scores = np.full(shape, -np.inf, dtype=np.float32)
        scores[:, rng.integers(0, shape[1], 30)] = rng.standard_normal(30).astype(np.float32)
    scores[:, rng.integers(0, shape[1], 40)] = -np.inf  # history items
    expected = full_ranks(scores)
    chunk = _chunk(scores)
    rows = rng.integers(0, shape[0], 3000)
    items = rng.integers(0, shape[1], 3000)
    np.testing.assert_array_equal(chunk.rank_of("s", rows, items), expected[rows, items])
    for n in (1, 7, 50, 500, shape[1], shape[1] + 3):
        np.testing.assert_array_equal(chunk.top("s", n), (expected < n) & np.isfinite(scores))


def test_full_ranks_breaks_ties_by_item_row() -> None:
    scores = np.array([[0.5, 1.0, 0.5, -np.inf, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(full_ranks(scores), [[2, 0, 3, 4, 1]])
    ranks = _chunk(scores).rank_of("s", np.zeros(5, int), np.arange(5))
    np.testing.assert_array_equal(ranks, [2, 0, 3, 4, 1])
    assert _chunk(scores).rank_of("s", np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_transition_counts_equal_the_matrix_entries():
    import scipy.sparse as sp

    from recsys.rank.features import _pair_values, pair_keys

    rng = np.random.default_rng(5)
    a_all, b_all = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    matrix = sp.csr_matrix((np.ones(300, np.float32), (a_all, b_all)), shape=(40, 40))  # duplicates summed
    a = np.r_[rng.integers(-1, 45, 500), a_all[:50]]
    b = np.r_[rng.integers(-1, 45, 500), b_all[:50]]
    dense = matrix.toarray()
    inside = (a >= 0) & (b >= 0) & (a < 40) & (b < 40)
    expected = np.where(inside, dense[np.clip(a, 0, 39), np.clip(b, 0, 39)], 0.0)
    np.testing.assert_array_equal(_pair_values(matrix, pair_keys(matrix), a, b), expected)
    empty = sp.csr_matrix((40, 40), dtype=np.float32)
    assert not _pair_values(empty, pair_keys(empty), a, b).any()


def test_cold_sources_add_candidates_only_where_the_history_is_empty() -> None:
    """``cold`` sources (the popular items, by default) join the candidates of a user with no
    history alone; a user with history gets the regular sources' best items only."""
    personal = np.array([[5.0, 4.0, 0.0, 0.0, 0.0, -np.inf], [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]], np.float32)
    popular = np.array([[0.0, 0.0, 9.0, 8.0, 0.0, -np.inf], [0.0, 0.0, 9.0, 8.0, 0.0, 0.0]], np.float32)
    scores = {"personal": personal, "popularity": popular}
    chunk = ScoredChunk([np.array([5]), np.zeros(0, np.int64)], scores, scores)
    rows, items = merge_candidates(chunk, {"personal": 2}, {"popularity": 2})
    assert list(zip(rows.tolist(), items.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
    ]
    rows, items = merge_candidates(chunk, {"personal": 2})  # no cold sources: the same as before
    assert list(zip(rows.tolist(), items.tolist(), strict=True)) == [(0, 0), (0, 1), (1, 4), (1, 5)]
