from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recsys.data import Dataset, TrainData, leave_one_out, synthetic_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIENTIFIC = SHARED_DATA / "amazon-scientific"


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
