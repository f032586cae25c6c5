from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl

from recsys.data import Dataset, TrainData, all_interactions, leave_one_out, synthetic_dataset
from recsys.data.schema import validate_interactions, validate_items

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIENTIFIC = SHARED_DATA / "amazon-scientific"


def hand_data(
    histories: list[list[int]],
    n_items: int,
    listed_at: list[float | None] | None = None,
    titles: list[str] | None = None,
) -> TrainData:
    """Training data of hand-made histories: user ``u{k}`` met items ``i{row}`` in that order;
    ``listed_at`` and ``titles`` (default: the ids) per item, if given."""
    ids = [f"i{k}" for k in range(n_items)]
    frame = pl.DataFrame({"item_id": ids, "title": titles if titles is not None else ids})
    if listed_at is not None:
        frame = frame.with_columns(pl.Series("listed_at", listed_at, dtype=pl.Float64))
    items = validate_items(frame)
    rows = [(f"u{u}", f"i{i}", p) for u, h in enumerate(histories) for p, i in enumerate(h)]
    inter = validate_interactions(pl.DataFrame(rows, schema=["user_id", "item_id", "position"], orient="row"))
    ds = Dataset("hand", items, inter)
    return TrainData.from_split(ds, all_interactions(ds))


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    return synthetic_dataset(n_users=400, n_items=200, seed=7)


@pytest.fixture(scope="session")
def loo_test(synthetic):
    split = leave_one_out(synthetic, "test")
    return split, TrainData.from_split(synthetic, split)


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the session, so each text set is encoded once."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="session")
def scientific() -> Dataset:
    if not SCIENTIFIC.is_dir():
        pytest.skip(f"reference data not found at {SCIENTIFIC}")
    from recsys.data import load_amazon_scientific

    return load_amazon_scientific(SCIENTIFIC)


@pytest.fixture(scope="session")
def encoder_checkpoint(synthetic, tmp_path_factory) -> Path:
    """A fine-tuned encoder after a few steps on the synthetic shop (for contract tests)."""
    from recsys.text.train import train_encoder

    run = tmp_path_factory.mktemp("encoder-run")
    train_encoder(
        synthetic,
        run,
        batch_size=16,
        max_length=24,
        max_steps=2,
        eval_users=50,
        eval_at_start=False,
        eval_every=100,
        progress=False,
    )
    return run


@pytest.fixture(scope="session")
def hybrid_config(embedding_cache):
    """A small hybrid: ALS, co-visitation, zero-shot text, popularity and word match, quick LambdaRank."""
    from recsys.recommender import RecommenderConfig

    return RecommenderConfig(
        scorers={
            "als": {"model": "als", "factors": 16, "iterations": 5},
            "covisit": {"model": "covisit"},
            "text": {"model": "text", "n_recent": 1, "cache_dir": str(embedding_cache)},
            "popularity": {"model": "popularity"},
            "lexical": {"model": "lexical"},
        },
        candidates={"als": 20, "covisit": 20, "text": 20, "popularity": 10, "lexical": 20},
        ranker={"max_rounds": 60, "min_data_in_leaf": 5, "early_stopping_rounds": 20, "threads": 1},
        label_folds=2,
        split_kind="leave-one-out",
        chunk_size=128,
    )


@pytest.fixture(scope="session")
def hybrid_artifact(synthetic, hybrid_config, tmp_path_factory) -> Path:
    """The small hybrid trained on the synthetic shop and saved as an artifact (serving on every event)."""
    from recsys.artifacts import save_recommender
    from recsys.rank.training import train_recommender

    rec, report = train_recommender(synthetic, hybrid_config)
    return save_recommender(rec, tmp_path_factory.mktemp("artifact") / "model", report=report)
