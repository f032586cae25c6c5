"""The scale generator: the shop's structure at any size, seeded."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.cli import main
from recsys.data import TrainData, leave_one_out
from recsys.data.synthetic import synthetic_scale
from recsys.evaluation import evaluate
from recsys.scorers import build_scorer


def test_structure_and_seed():
    a = synthetic_scale(n_users=3000, n_items=400, seed=3)
    b = synthetic_scale(n_users=3000, n_items=400, seed=3)
    assert a.interactions.equals(b.interactions)
    lengths = a.interactions.group_by("user_id").len()["len"]
    assert a.interactions["user_id"].n_unique() == 3000
    assert lengths.min() >= 5 and lengths.max() <= 20
    # Successor chains: the most common next item after an item is frequent.
    inter = a.interactions.sort("user_id", "seq")
    nxt = inter.with_columns(pl.col("item_id").shift(-1).over("user_id").alias("next")).drop_nulls("next")
    top_share = (
        nxt.group_by("item_id", "next")
        .len()
        .group_by("item_id")
        .agg((pl.col("len").max() / pl.col("len").sum()).alias("share"))
    )
    assert top_share["share"].median() > 0.3


def test_models_learn_the_chains_at_scale():
    data = synthetic_scale(n_users=3000, n_items=400, seed=4)
    split = leave_one_out(data, "test")
    train = TrainData.from_split(data, split)
    ndcg = {
        name: evaluate(build_scorer(name, {}).fit(train), train, split).metrics["ndcg@10"]
        for name in ("popularity", "covisit")
    }
    assert ndcg["covisit"] > 2 * ndcg["popularity"], ndcg


def test_synth_command_writes_readable_files(tmp_path, capsys):
    assert main(["synth", "--users", "500", "--items", "100", "--out", str(tmp_path)]) == 0
    items = pl.read_parquet(tmp_path / "items.parquet")
    inter = pl.read_parquet(tmp_path / "interactions.parquet")
    assert items.height == 100 and inter["user_id"].n_unique() == 500
    assert np.isin(inter["item_id"].unique().to_numpy(), items["item_id"].to_numpy()).all()
    assert "wrote" in capsys.readouterr().out
