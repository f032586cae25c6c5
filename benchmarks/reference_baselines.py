"""Reproduce the reference baselines of Amazon Scientific (test split, full ranking) and time it.

    .venv/bin/python benchmarks/reference_baselines.py --data-dir ../shared/data/amazon-scientific

Runs the same job as `recsys evaluate` with the reference settings, from a cold embedding cache
(so the wall time includes encoding every item), compares each row with the folder's README, and
writes benchmarks/results/scientific_baselines.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine

from pipelines.evaluate import EvaluationJob, run_evaluation
from recsys.data import load_amazon_scientific
from recsys.evaluation.report import format_table, write_json

# ../shared/data/amazon-scientific/README.md, "Reference baselines measured on this exact split".
REFERENCE = {
    "popularity": {
        "recall@10": 0.0315,
        "ndcg@10": 0.0180,
        "recall@50": 0.0965,
        "ndcg@50": 0.0316,
        "mrr": 0.0186,
    },
    "covisit": {
        "recall@10": 0.1067,
        "ndcg@10": 0.0775,
        "recall@50": 0.1752,
        "ndcg@50": 0.0924,
        "mrr": 0.0735,
    },
    "als": {"recall@10": 0.1228, "ndcg@10": 0.0823, "recall@50": 0.2109, "ndcg@50": 0.1015, "mrr": 0.0756},
    "text": {"recall@10": 0.1009, "ndcg@10": 0.0682, "recall@50": 0.1561, "ndcg@50": 0.0804, "mrr": 0.0622},
}
# The reference settings, spelled out (they are also the defaults).
SETTINGS = {
    "covisit": {"n_recent": 5, "decay": 0.5, "cooccurrence_weight": 0.0},
    "als": {"factors": 128, "alpha": 20.0, "regularization": 0.05, "iterations": 20, "seed": 0},
    "text": {"max_length": 64, "n_recent": 1},
}
TOLERANCE = 0.005


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--models", default="popularity,covisit,als,bpr,text")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "scientific_baselines.json"
    )
    parser.add_argument("--warm-cache", action="store_true", help="reuse the default embedding cache")
    args = parser.parse_args()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        options = {name: dict(opts) for name, opts in SETTINGS.items()}
        if not args.warm_cache:
            options["text"]["cache_dir"] = cache
        dataset = load_amazon_scientific(args.data_dir)
        job = EvaluationJob(
            models=args.models.split(","), model_options=options, split="test", progress=False
        )
        report = run_evaluation(dataset, job)
    wall = time.perf_counter() - t0

    comparison = {}
    for name, ref in REFERENCE.items():
        if name in report["results"]:
            ours = report["results"][name]
            diff = {m: round(ours[m] - v, 4) for m, v in ref.items()}
            comparison[name] = {
                "reference": ref,
                "diff": diff,
                "within_tolerance": abs(diff["recall@10"]) <= TOLERANCE,
            }
    rows = {**report["results"]}
    for name, ref in REFERENCE.items():
        rows[f"{name} (reference)"] = ref
    print(format_table(rows))
    print(f"\nwall time, whole evaluation (load, fit, encode from a cold cache, rank): {wall:.1f}s")
    for name, c in comparison.items():
        verdict = "ok" if c["within_tolerance"] else "OFF"
        print(f"{name:>10}: recall@10 diff {c['diff']['recall@10']:+.4f}  {verdict}")
    write_json(
        args.output,
        {
            "command": "python benchmarks/reference_baselines.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "wall_seconds": round(wall, 1),
            "stage_seconds": {name: m["seconds"] for name, m in report["models"].items()},
            "protocol": report["protocol"],
            "results": report["results"],
            "comparison": comparison,
            "tolerance_recall@10": TOLERANCE,
        },
    )
    print(f"wrote {args.output}")
    return 0 if all(c["within_tolerance"] for c in comparison.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
