"""Every metric against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.metrics import (
    UndefinedMetricWarning,
    mean_metrics,
    ranking_metrics,
    target_ranks,
    top_k,
)


def test_single_target_by_hand():
    # User 0's target is at rank 0, user 1's at rank 3, user 2's at rank 12.
    m = ranking_metrics(np.array([0, 3, 12]), np.array([0, 1, 2]), 3, ks=(10,))
    assert m["recall@10"].tolist() == [1.0, 1.0, 0.0]
    assert m["hit@10"].tolist() == [1.0, 1.0, 0.0]
    assert m["ndcg@10"] == pytest.approx([1.0, 1 / math.log2(5), 0.0])
    assert m["mrr"] == pytest.approx([1.0, 1 / 4, 1 / 13])


def test_multi_target_by_hand():
    # One user with three targets at ranks 1, 4 and 20; k = 5.
    m = ranking_metrics(np.array([1, 4, 20]), np.array([0, 0, 0]), 1, ks=(5,))
    assert m["recall@5"][0] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@5"][0] == pytest.approx(dcg / idcg)
    assert m["hit@5"][0] == 1.0
    assert m["mrr"][0] == pytest.approx(1 / 2)


def test_ideal_dcg_capped_at_k():
    # Three targets, k = 2, both top slots hit: a perfect list at k = 2.
    m = ranking_metrics(np.array([0, 1, 9]), np.zeros(3, dtype=int), 1, ks=(2,))
    assert m["ndcg@2"][0] == pytest.approx(1.0)
    assert m["recall@2"][0] == pytest.approx(2 / 3)


def test_user_without_target_refused():
    with pytest.raises(ValueError, match="at least one target"):
        ranking_metrics(np.array([0]), np.array([1]), 2)


def test_empty_is_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning):
        out = mean_metrics({"recall@10": np.array([])})
    assert math.isnan(out["recall@10"])


def test_target_ranks_break_ties_by_item_row():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5], [1.0, 1.0, 1.0, 1.0, -np.inf]])
    # Row 0: target 2 (0.5) — item 1 is higher, item 0 ties earlier → rank 2.
    # Row 1: target 3 — items 0, 1, 2 tie earlier → rank 3; target 0 → rank 0.
    ranks = target_ranks(scores, np.array([0, 1, 1]), np.array([2, 3, 0]))
    assert ranks.tolist() == [2, 3, 0]


def test_top_k_deterministic_ties():
    scores = np.array([[0.0, 2.0, 1.0, 2.0, 1.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    assert top_k(scores, 10).shape == (2, 6)


def test_top_k_agrees_with_ranks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(20, 30)).astype(np.float32)  # many ties
    tops = top_k(scores, 30)
    for r in range(20):
        ranks = target_ranks(scores, np.full(30, r), tops[r])
        assert ranks.tolist() == list(range(30))
