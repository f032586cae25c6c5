from __future__ import annotations

import numpy as np
import pytest

from recsys.data.matrix import sequences, user_item_matrix
from recsys.data.vocab import IdVocab


def test_vocab_round_trip_and_unknown():
    v = IdVocab(["x", "y", "z"])
    assert v.index(["z", "x", "nope"]).tolist() == [2, 0, -1]
    assert v.lookup([1, 2]) == ["y", "z"]
    assert len(v) == 3 and "y" in v and "q" not in v
    with pytest.raises(ValueError):
        IdVocab(["a", "a"])


def test_matrix_binary_and_counts():
    u, i = np.array([0, 0, 1, 0]), np.array([1, 1, 2, 0])
    binary = user_item_matrix(u, i, 2, 3)
    assert binary.toarray().tolist() == [[1, 1, 0], [0, 0, 1]]
    counts = user_item_matrix(u, i, 2, 3, weighting="count")
    assert counts.toarray().tolist() == [[1, 2, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="vocabulary"):
        user_item_matrix(np.array([-1]), np.array([0]), 2, 3)


def test_sequences_in_time_order():
    indptr, items = sequences(np.array([1, 0, 1, 0]), np.array([5, 6, 7, 8]), np.array([1, 1, 0, 0]), 3)
    assert indptr.tolist() == [0, 2, 4, 4]
    assert items.tolist() == [8, 6, 7, 5]
