"""On Amazon Scientific, our baselines reproduce the reference rows (within 0.005 Recall@10)."""

from __future__ import annotations

import pytest

from recsys.data import TrainData, leave_one_out
from recsys.evaluation import evaluate
from recsys.scorers import build_scorer

pytestmark = pytest.mark.realdata

# ../shared/data/amazon-scientific/README.md: Recall@10, NDCG@10.
REFERENCE = {
    "popularity": (0.0315, 0.0180),
    "covisit": (0.1067, 0.0775),
    "als": (0.1228, 0.0823),
    "text": (0.1009, 0.0682),
}


@pytest.fixture(scope="module")
def test_split(scientific):
    split = leave_one_out(scientific, "test")
    return split, TrainData.from_split(scientific, split)


@pytest.mark.parametrize(
    "name", ["popularity", "covisit", "als", pytest.param("text", marks=pytest.mark.slow)]
)
def test_reproduces_reference(test_split, name, tmp_path_factory):
    split, data = test_split
    options = {"cache_dir": str(tmp_path_factory.mktemp("emb"))} if name == "text" else {}
    metrics = evaluate(build_scorer(name, options).fit(data), data, split).metrics
    recall, ndcg = REFERENCE[name]
    assert metrics["recall@10"] == pytest.approx(recall, abs=0.005)
    assert metrics["ndcg@10"] == pytest.approx(ndcg, abs=0.005)
