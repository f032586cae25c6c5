"""A second LambdaRank stacked on the ranker's best N, with features of the list it made.

    .venv/bin/python benchmarks/second_stage.py --work artifacts/scientific.work --depth 50

The ranker scores each candidate on its own: it cannot see that its top ten hold four items of
one category, or that a candidate is a near twin of the item it put first. A second stage can:
over each query's ``--depth`` best candidates by the ranker's score it adds the score's rank, gap
to the best, gap to the next and standard score within the list; the candidate's word cosine
(the lexical scorer's TF-IDF vectors, read from the catalogue alone) to the list's first item,
its mean over the first five and its largest over the first ten (others than itself); and how
many of the first ten share its category and its brand. It learns, cross-fitted like the ranker,
from the ranker's out-of-fold scores of the label folds (``Ranker.oof_scores``: no user's score
comes from a model that learned from them), and ranks the test split's candidates from the
ranker's test scores.

Two stacks: the list features alone, and with every feature of the ranker beside them. Reported:
the validation figure over the queries whose target is among their best N (out of fold, the
ranker's own figure over the same queries beside it) and the test split's Recall@10, NDCG@10,
Recall@50, NDCG@50 with the NDCG@10 gain over the ranker alone and its paired bootstrap 95%
interval (a target below the best N is a miss for both). Frames come from
``benchmarks/ranker_settings.py`` (built there on first use, kept under ``<work>/frames``).
Writes benchmarks/results/second_stage.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import numpy as np
import polars as pl
from _machine import machine
from ranker_settings import METRICS, build_frames, test_metrics
from ranker_variants import _configs, _variant

from pipelines.train import TrainJob
from recsys.data import load_amazon_scientific
from recsys.data.split import all_interactions
from recsys.data.train_data import TrainData
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap
from recsys.rank.ranker import Ranker, ndcg_per_query
from recsys.rank.training import model_features, train_ranker
from recsys.scorers.lexical import LexicalScorer

LIST_FEATURES = [
    "first_score",
    "first_rank",
    "first_gap_to_best",
    "first_gap_to_next",
    "first_z",
    "words_to_top1",
    "words_to_top5",
    "words_max_top10",
    "category_in_top10",
    "brand_in_top10",
]


def list_features(frame: pl.DataFrame, scores: np.ndarray, vectors: Any, depth: int) -> pl.DataFrame:
    """``frame``'s ``depth`` best candidates per query by ``scores``, with the list's features."""
    top = (
        frame.with_columns(first_score=pl.Series(scores))
        .with_columns(first_rank=pl.col("first_score").rank("ordinal", descending=True).over("user") - 1)
        .filter(pl.col("first_rank") < depth)
        .sort("user", "first_rank")
    )
    score = pl.col("first_score")
    top = top.with_columns(
        first_gap_to_best=score.max().over("user") - score,
        first_gap_to_next=(score - score.shift(-1).over("user")).fill_null(0.0),
        first_z=((score - score.mean().over("user")) / (score.std().over("user") + 1e-9)).fill_null(0.0),
        first_rank=pl.col("first_rank").cast(pl.Float64),
    )
    users, items = top["user"].to_numpy(), top["item"].to_numpy()
    category, brand = top["category"].to_numpy(), top["brand"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    out = {name: np.zeros(len(top)) for name in LIST_FEATURES[5:]}
    for a, b in zip(starts, ends, strict=True):
        n = b - a
        sim = (vectors[items[a:b]] @ vectors[items[a:b]].T).toarray()
        np.fill_diagonal(sim, np.nan)  # a candidate is not compared with itself
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a list of one
            out["words_to_top1"][a:b] = np.where(np.arange(n) == 0, sim[0, min(1, n - 1)], sim[:, 0])
            out["words_to_top5"][a:b] = np.nanmean(sim[:, :5], axis=1)
            out["words_max_top10"][a:b] = np.nanmax(sim[:, :10], axis=1)
        # how many others of the first ten share the candidate's category / brand (unknown: none)
        in_top10 = np.arange(n) < 10
        for name, codes in (("category_in_top10", category[a:b]), ("brand_in_top10", brand[a:b])):
            same = (codes[None, :10] == codes[:, None]) & (codes[:, None] >= 0)
            out[name][a:b] = same.sum(axis=1) - (in_top10 & (codes >= 0))
    return top.with_columns(**{name: pl.Series(np.nan_to_num(v)) for name, v in out.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--variant", type=_variant, default="defaults", help="scorer variant")
    ap.add_argument("--depth", type=int, default=50, help="the ranker's best N per query, reordered")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "second_stage.json")
    args = ap.parse_args()
    if args.depth < 10:
        raise SystemExit(f"--depth {args.depth}: the list features read the first ten, so at least 10")
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)
    labels, test = build_frames(dataset, job, args.work, args.variant)
    config = _configs(job, args.work, "labels", args.variant)[0]
    if not config.ranker_config().cv_folds:
        raise SystemExit("stage 2 learns from out-of-fold scores: the ranker must cross-fit (cv_folds > 0)")
    t0 = time.perf_counter()
    ranker, _ = train_ranker(dataset, config, frames=(labels, {}, {}))
    assert ranker.oof_scores is not None
    learn = labels.join(ranker.oof_scores, on=["user", "item"])  # the queries with a target
    print(f"ranker: {time.perf_counter() - t0:.0f} s", flush=True)
    vectors = LexicalScorer().fit(TrainData.from_split(dataset, all_interactions(dataset))).vectors.tocsr()
    learn = list_features(learn, learn["score"].to_numpy(), vectors, args.depth)
    test = list_features(test, ranker.predict(test), vectors, args.depth)
    n_users = test["user"].n_unique()
    first = test_metrics(test, test["first_score"].to_numpy(), n_users)
    has = learn.group_by("user").agg(pl.col("label").max()).filter(pl.col("label") > 0)["user"]
    useful = learn.filter(pl.col("user").is_in(has.implode())).sort("user", "first_rank")
    groups = np.unique(useful["user"].to_numpy(), return_counts=True)[1]
    first_validation = float(
        ndcg_per_query(useful["first_score"].to_numpy(), useful["label"].to_numpy(), groups, 10).mean()
    )
    results: dict[str, Any] = {
        "ranker": {
            "validation_ndcg@10_top_n": round(first_validation, 4),
            "queries": len(groups),
            "test": {m: round(float(first[m].mean()), 4) for m in METRICS},
        }
    }
    print("ranker", results["ranker"], flush=True)
    for name, columns in (("list", LIST_FEATURES), ("list+ranker", LIST_FEATURES + model_features(config))):
        t0 = time.perf_counter()
        stacked = Ranker(config.ranker_config(), columns).fit(learn)
        per_user = test_metrics(test, stacked.predict(test), n_users)
        gain = paired_bootstrap(per_user["ndcg@10"], first["ndcg@10"])
        results[name] = {
            "validation_ndcg@10_top_n": round(float(stacked.info["holdout_ndcg@10"]), 4),
            "test": {m: round(float(per_user[m].mean()), 4) for m in METRICS},
            "ndcg@10_gain_over_ranker": [round(gain[k], 4) for k in ("mean_difference", "low", "high")],
            "importance_top10": dict(list(stacked.importance().items())[:10]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, results[name], flush=True)
    command = "python benchmarks/second_stage.py " + " ".join(sys.argv[1:])
    report = {"command": command, "machine": machine(), "depth": args.depth, "results": results}
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
