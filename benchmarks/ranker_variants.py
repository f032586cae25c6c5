"""Retrain only the ranker over the encoder and SASRec a `recsys train` left behind, per variant.

    .venv/bin/python benchmarks/ranker_variants.py --work artifacts/scientific.work nobias bias

`recsys train` keeps the encoder and SASRec it trained for the ranker's labels and for the test
split in `<out>.work/{labels,test}`. Each variant here changes the recommender's configuration,
relearns LambdaRank from the validation folds (as `recsys train` does) and scores the hybrid on the
test split, so a change to the ranking stage costs minutes instead of a whole training. Variants:

- `bias`: the encoder scorer with its learned prior per item (`item_bias = true`);
- `nobias`: the encoder scorer by text match alone (`item_bias = false`, `recsys train`'s default).

Prints the ranker's validation figures (holdout NDCG@10 within the candidates, candidate recall
of both folds) beside the test metrics; writes benchmarks/results/ranker_variants.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine

from pipelines.train import TrainJob, test_recommender
from recsys.data import load_amazon_scientific
from recsys.evaluation import evaluate
from recsys.evaluation.report import write_json
from recsys.rank.training import train_ranker
from recsys.recommender import HybridScorer, RecommenderConfig

VARIANTS = {"bias": {"item_bias": True}, "nobias": {"item_bias": False}}


def _config(job: TrainJob, work: Path, purpose: str, variant: str) -> RecommenderConfig:
    config = job.recommender_config(str(work / purpose / "encoder"), str(work / purpose / "sasrec.pt"))
    scorers = {name: dict(spec) for name, spec in config.scorers.items()}
    scorers["encoder"].update(VARIANTS[variant])
    return dataclasses.replace(config, scorers=scorers)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ranker_variants.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)
    results = {}
    for variant in args.variants:
        t0 = time.perf_counter()
        ranker, report = train_ranker(dataset, _config(job, args.work, "labels", variant))
        rec, data, split = test_recommender(dataset, _config(job, args.work, "test", variant), ranker)
        test = evaluate(HybridScorer(rec).fit(data), data, split).metrics
        validation = {
            "holdout_ndcg@10": round(report["ranker"]["holdout_ndcg@10"], 4),
            "best_round": report["ranker"]["best_round"],
            **{
                f"candidate_recall_{f}": v["candidate_recall"]["merged"]
                for f, v in report["validation"].items()
            },
        }
        results[variant] = {"validation": validation, "test": {k: round(v, 4) for k, v in test.items()}}
        print(
            variant,
            validation,
            {k: results[variant]["test"][k] for k in ("recall@10", "ndcg@10", "recall@50")},
        )
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    command = "python benchmarks/ranker_variants.py " + " ".join(sys.argv[1:])
    write_json(args.output, {"command": command, "machine": machine(), "results": results})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
