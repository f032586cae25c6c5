"""Train the whole hybrid on Amazon Scientific (`recsys train`'s job) and measure it on the test split.

    .venv/bin/python benchmarks/hybrid.py --data-dir ../shared/data/amazon-scientific \
        --out runs/artifacts/scientific [--config train.toml] [--set ranker.num_leaves=63]

Reports each stage's wall time, candidate recall per source and merged (validation targets),
feature importance, the test metrics of the hybrid beside each of its scorers alone and the
published rows, and a paired bootstrap 95% interval of the hybrid's NDCG@10 gain over the best
single scorer. Writes benchmarks/results/hybrid.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine

from pipelines.train import TrainJob, run_training, test_recommender, trained_models
from recsys.artifacts import load_recommender
from recsys.config import load_toml
from recsys.data import load_amazon_scientific
from recsys.evaluation import evaluate
from recsys.evaluation.report import format_table, write_json
from recsys.evaluation.stats import ndcg_at, paired_bootstrap
from recsys.recommender import HybridScorer

PUBLISHED = {
    "naive blend (reference)": {"recall@10": 0.1432, "ndcg@10": 0.1005, "recall@50": 0.2357, "mrr": 0.0934},
    "Recformer (published)": {"recall@10": 0.1448, "ndcg@10": 0.1027},
}
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "coverage@10")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--out", type=Path, default=Path("runs/artifacts/scientific"))
    parser.add_argument("--config", type=Path, help="TOML with [recommender], [ranker], [encoder]")
    parser.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE override")
    parser.add_argument(
        "--reuse", action="store_true", help="skip training: evaluate the artifact already at --out"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "hybrid.json")
    args = parser.parse_args()

    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config(
        load_toml(args.config) if args.config else {}, args.out, args.set, progress=False
    )
    t0 = time.perf_counter()
    report: dict = {}
    if not args.reuse:
        report = run_training(dataset, job)
    train_minutes = (time.perf_counter() - t0) / 60
    rec = load_recommender(args.out)
    if args.reuse:
        import json

        report = json.loads((args.out / "manifest.json").read_text())["report"]

    # The test figures come from models trained on the test split's training data only (the
    # artifact's encoder and SASRec have seen every interaction, test targets included).
    t0 = time.perf_counter()
    probe = job.recommender_config(None)
    (test_config,), _, test_seconds = trained_models(
        dataset, job, "test", probe.label_folds, probe.split_kind
    )
    refitted, data, split = test_recommender(dataset, test_config, rec.ranker, probe.split_kind)
    results, ranks = {}, {}
    for name, scorer in [*refitted.scorers.items(), ("hybrid", HybridScorer(refitted).fit(data))]:
        res = evaluate(scorer, data, split, keep_per_target=True)
        assert res.per_target is not None
        per = res.per_target.sort("user")
        results[name], ranks[name] = res.metrics, per["rank"].to_numpy()
    eval_minutes = (time.perf_counter() - t0) / 60
    singles = {n: m["ndcg@10"] for n, m in results.items() if n != "hybrid"}
    best = max(singles, key=lambda n: singles[n])
    gain = paired_bootstrap(ndcg_at(ranks["hybrid"], 10), ndcg_at(ranks[best], 10), n_resamples=2000, seed=0)

    rows = {**results, **PUBLISHED}
    print(format_table(rows, METRICS))
    print(
        f"\nNDCG@10 gain over the best single scorer ({best}): {gain['mean_difference']:+.4f} "
        f"(95% CI {gain['low']:+.4f} to {gain['high']:+.4f}, paired bootstrap over {gain['cases']} users)"
    )
    if args.reuse:
        print(f"training reused from {args.out} (its stage times are in recsys train's --output report)")
    else:
        print(f"train {train_minutes:.1f} min; stage seconds {report.get('stage_seconds')}")
    write_json(
        args.output,
        {
            "command": "python benchmarks/hybrid.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "train_minutes": None if args.reuse else round(train_minutes, 2),
            "stage_seconds": report.get("stage_seconds"),
            "validation": report.get("validation"),
            "ranker": report.get("ranker"),
            "importance": report.get("importance"),
            "models": report.get("models"),
            "test": results,
            "published": PUBLISHED,
            "gain_over_best_single": {"best_single": best, **gain},
            "evaluate_minutes": round(eval_minutes, 2),
            "test_model_seconds": {k: round(v, 1) for k, v in test_seconds.items()},
        },
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
