"""Feature columns of the user's style and the item's label rate, tried over the frames
ranker_settings.py keeps (``<work>/frames/defaults``), without rebuilding them.

    .venv/bin/python benchmarks/user_features.py --work artifacts/scientific25.work \
        [--columns u_coherence,u_transition] [--output benchmarks/results/user_features.json]

The user's style, from their last ten consecutive pairs of items and the fold's training data:
how alike consecutive items are (TF-IDF cosine: mean ``u_coherence``, the newest pair
``u_coherence_last``), how often they share a category / brand (``u_same_category``,
``u_same_brand``), how common the user's own transitions are among the other users'
(``u_transition``, mean log count without their own). The item's label rate (``i_rate``): how
often it was the label when it was a candidate, shrunk toward the overall rate by ``--smooth``
appearances; out of fold by person (five parts) for the labels, from every label for the test.
Each label fold's columns come from that fold's histories. The ranker (the defaults) learns
with and without them; reported: out-of-fold NDCG@10 of every user's validation event and test
NDCG@10, each gain with its paired bootstrap 95% interval. Measured lower on Amazon Scientific
(benchmarks/RESULTS.md, issue 4).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl
from _machine import machine
from ranker_settings import run_setting, test_metrics
from ranker_variants import _configs

from pipelines.train import TrainJob
from recsys.data import load_amazon_scientific
from recsys.data.split import make_split
from recsys.data.train_data import TrainData
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap
from recsys.rank.features import ItemSide
from recsys.rank.ranker import Ranker
from recsys.rank.training import fold_data, model_features
from recsys.scorers.lexical import LexicalScorer

N_PAIRS = 10  # the user's newest consecutive pairs


def user_columns(data: TrainData) -> pl.DataFrame:
    side = ItemSide.build(data, np.zeros((data.n_items, 1), np.float32))
    words = LexicalScorer().fit(data).vectors.tocsr()
    names = ("u_coherence", "u_same_category", "u_same_brand", "u_transition", "u_coherence_last")
    rows: dict[str, list[float]] = {k: [] for k in names}
    for u in range(data.n_users):
        h = data.history(u)[-(N_PAIRS + 1) :]
        if len(h) < 2:
            for k in rows:
                rows[k].append(np.nan)
            continue
        a, b = h[:-1], h[1:]
        cos = np.asarray(words[a].multiply(words[b]).sum(axis=1)).ravel()
        rows["u_coherence"].append(float(cos.mean()))
        rows["u_coherence_last"].append(float(cos[-1]))
        cat = (side.category[a] == side.category[b]) & (side.category[a] >= 0)
        brand = (side.brand[a] == side.brand[b]) & (side.brand[a] >= 0)
        rows["u_same_category"].append(float(cat.mean()))
        rows["u_same_brand"].append(float(brand.mean()))
        # the user's own pairs counted by the other users: minus their own occurrence
        own = side.transition_counts(a, b) - 1.0
        rows["u_transition"].append(float(np.log1p(np.maximum(own, 0.0)).mean()))
    return pl.DataFrame({"person": np.arange(data.n_users, dtype=np.int64), **rows})


def item_rates(
    labels: pl.DataFrame, test: pl.DataFrame, smooth: float, parts: int = 5
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``i_rate``: how often the item was the label when it was a candidate, shrunk toward the
    overall rate by ``smooth`` candidate appearances; for the label frame out of fold (by person,
    ``parts`` parts), for the test frame from every label."""
    labels = labels.with_columns(pl.col("item").cast(pl.Int64))
    test = test.with_columns(pl.col("item").cast(pl.Int64))
    prior = float(labels["label"].mean())

    def rates(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.group_by("item").agg(
            ((pl.col("label").sum() + smooth * prior) / (pl.len() + smooth)).alias("i_rate")
        )

    part = (pl.col("person").hash(7) % parts).alias("_part")
    labels = labels.with_columns(part)
    pieces = []
    for p in range(parts):
        inside = labels.filter(pl.col("_part") == p)
        pieces.append(inside.join(rates(labels.filter(pl.col("_part") != p)), on="item", how="left"))
    out = pl.concat(pieces).drop("_part").with_columns(pl.col("i_rate").fill_null(prior))
    test = test.join(rates(labels), on="item", how="left").with_columns(pl.col("i_rate").fill_null(prior))
    return out.sort("user"), test


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--smooth", type=float, default=20.0, help="i_rate's shrinkage, in candidate appearances")
    ap.add_argument("--columns", default="", help="comma-separated subset of the new columns (default all)")
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "user_features.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    folder = args.work / "frames" / "defaults"
    frames = pl.read_parquet(folder / "labels.parquet"), pl.read_parquet(folder / "test.parquet")
    labels, test = frames
    job = TrainJob.from_config({}, args.work)
    config = _configs(job, args.work, "labels", "defaults")[0]
    parts = []
    for fold in sorted(labels["fold"].unique().to_list()):
        data, _ = fold_data(dataset, fold, config.split_kind)
        parts.append(user_columns(data).with_columns(fold=pl.lit(fold, pl.Int8)))
    labels = labels.join(pl.concat(parts), on=["person", "fold"], how="left")
    test_data = TrainData.from_split(dataset, make_split(dataset, "test"))
    test = test.join(user_columns(test_data).rename({"person": "user"}), on="user", how="left")
    labels, test = item_rates(labels, test, args.smooth)
    new = [c for c in labels.columns if c.startswith(("u_", "i_"))]
    if args.columns:
        new = args.columns.split(",")
    # The defaults' figures as ranker_settings.py keeps them for these frames (learned once).
    kept_row, kept = run_setting(dataset, config, {}, *frames, folder)
    first = (kept["oof_fold0"], kept["ndcg@10"])
    out: dict[str, Any] = {
        "defaults": {
            "oof_every_user": kept_row["validation"]["holdout_ndcg@10_every_user"],
            "oof_fold0": round(float(first[0].mean()), 4),
            "test": {m: round(float(kept[m].mean()), 4) for m in ("recall@10", "ndcg@10")},
        }
    }
    print("defaults", json.dumps(out["defaults"]), flush=True)
    features = model_features(config) + new
    ranker = Ranker(config.ranker_config(), features).fit(labels)
    per_user = test_metrics(test, ranker.predict(test), test["user"].n_unique())
    assert ranker.oof is not None  # cross-fitted: every labelled query scored out of fold
    oof = ranker.oof.filter(pl.col("fold") == 0)["ndcg@10"].to_numpy()
    row: dict[str, Any] = {
        "oof_every_user": round(ranker.info["holdout_ndcg@10_every_user"], 4),
        "oof_fold0": round(float(oof.mean()), 4),
        "test": {m: round(float(per_user[m].mean()), 4) for m in ("recall@10", "ndcg@10")},
    }
    for key, a, b in (("fold0_gain", oof, first[0]), ("test_gain", per_user["ndcg@10"], first[1])):
        g = paired_bootstrap(a, b)
        row[key] = [round(g[k], 4) for k in ("mean_difference", "low", "high")]
    row["importance"] = {k: v for k, v in ranker.importance().items() if k in new}
    out["with user columns"] = row
    print("with user columns", json.dumps(row), flush=True)
    command = "python benchmarks/user_features.py " + " ".join(sys.argv[1:])
    write_json(args.output, {"command": command, "machine": machine(), "columns": new, "results": out})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
