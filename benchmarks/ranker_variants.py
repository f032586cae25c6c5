"""Retrain only the ranker over the encoder and SASRec a `recsys train` left behind, per variant.

    .venv/bin/python benchmarks/ranker_variants.py --work artifacts/scientific.work nobias bias

`recsys train` keeps the encoder and SASRec it trained for the ranker's labels and for the test
split in `<out>.work/{labels,test}`. Each variant here changes the recommender's configuration,
relearns LambdaRank from the validation folds (as `recsys train` does) and scores the hybrid on the
test split, so a change to the ranking stage costs minutes instead of a whole training. Variants:

- `bias`: the encoder scorer with its learned prior per item (`item_bias = true`);
- `nobias`: the encoder scorer by text match alone (`item_bias = false`, `recsys train`'s default);
- `seqlinear`: the sequential linear scorer as a feature and a candidate source (its 100 best
  items), as in today's defaults (for configurations that lack it);
- `no-seqlinear`: the defaults without the sequential linear scorer;
- `leaves15`, `leaves63`, `lr02`, `minleaf200`: LambdaRank with 15 or 63 leaves, learning rate
  0.02, at least 200 pairs per leaf;
- `smooth`: the round kept is the best of the holdout curve's 25-round moving average;
- `refit`: `smooth`, then LambdaRank learned again on every labelled user for that many rounds;
- `trunc10`, `trunc100`: LambdaRank's truncation level (pairs considered below the top of each
  list) 10 or 100 instead of 30;
- `sasrec200`: SASRec's 200 best items as candidates instead of 100;
- `sasrec-seed1`: a second SASRec, seed 1, as one more scorer (features only); its checkpoints
  for the labels and the test split are trained here when missing (`<work>/*/sasrec_seed1.pt`).

Variants combine with `+` (`seqlinear+leaves63`). Variants with the same scorers and candidates
share their labelled candidates and features: only LambdaRank is relearned.

Prints the ranker's validation figures (holdout NDCG@10 within the candidates, candidate recall
of both folds) beside the test metrics; writes benchmarks/results/ranker_variants.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine

from pipelines.train import TrainJob, purpose_data, test_recommender
from recsys.data import load_amazon_scientific
from recsys.evaluation import evaluate
from recsys.evaluation.report import write_json
from recsys.rank.training import label_folds, ranker_frames, train_ranker
from recsys.recommender import HybridScorer, RecommenderConfig

# Per variant: options merged into scorers' specs (None removes the scorer), and candidate depths
# (0 removes the source).
VARIANTS: dict[str, dict[str, dict]] = {
    "bias": {"scorers": {"encoder": {"item_bias": True}}},
    "nobias": {"scorers": {"encoder": {"item_bias": False}}},
    "seqlinear": {"scorers": {"seqlinear": {"model": "seqlinear"}}, "candidates": {"seqlinear": 100}},
    "no-seqlinear": {"scorers": {"seqlinear": None}, "candidates": {"seqlinear": 0}},
    "leaves15": {"ranker": {"num_leaves": 15}},
    "leaves63": {"ranker": {"num_leaves": 63}},
    "lr02": {"ranker": {"learning_rate": 0.02}},
    "minleaf200": {"ranker": {"min_data_in_leaf": 200}},
    "smooth": {"ranker": {"smooth_rounds": 25}},
    "refit": {"ranker": {"smooth_rounds": 25, "refit_all": True}},
    "trunc10": {"ranker": {"truncation_level": 10}},
    "trunc100": {"ranker": {"truncation_level": 100}},
    "sasrec200": {"candidates": {"sasrec": 200}},
    # A second SASRec (seed 1) as a scorer of its own, trained here on first use.
    "sasrec-seed1": {
        "scorers": {"sasrec_seed1": {"model": "sasrec", "checkpoint": "{work}/{purpose}/sasrec_seed1.pt"}}
    },
}


def _variant(name: str) -> str:
    for part in name.split("+"):
        if part not in VARIANTS:
            raise argparse.ArgumentTypeError(f"unknown variant {part!r}; valid: {', '.join(VARIANTS)}")
    return name


def _config(job: TrainJob, work: Path, purpose: str, variant: str) -> RecommenderConfig:
    config = job.recommender_config(str(work / purpose / "encoder"), str(work / purpose / "sasrec.pt"))
    scorers = {name: dict(spec) for name, spec in config.scorers.items()}
    candidates, ranker = dict(config.candidates), dict(config.ranker)
    for part in variant.split("+"):
        for name, patch in VARIANTS[part].get("scorers", {}).items():
            if patch is None:
                scorers.pop(name, None)
            else:
                filled = {
                    k: v.format(work=work, purpose=purpose) if isinstance(v, str) else v
                    for k, v in patch.items()
                }
                scorers[name] = {**scorers.get(name, {}), **filled}
        candidates.update(VARIANTS[part].get("candidates", {}))
        ranker.update(VARIANTS[part].get("ranker", {}))
    candidates = {name: depth for name, depth in candidates.items() if depth}
    return dataclasses.replace(config, scorers=scorers, candidates=candidates, ranker=ranker)


def _seed1_checkpoints(dataset, work: Path, config: RecommenderConfig) -> None:
    """Train SASRec with seed 1 on the data ``recsys train`` used for its labels and test models."""
    from recsys.scorers.sasrec import SASRecScorer

    folds = label_folds(dataset, config)
    for purpose in ("labels", "test"):
        path = work / purpose / "sasrec_seed1.pt"
        if not path.exists():
            _, train = purpose_data(dataset, purpose, folds, config.split_kind)
            SASRecScorer(seed=1).fit(train).save_checkpoint(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", type=_variant, help="variant names, combined with +")
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ranker_variants.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)
    results, frames = {}, {}
    if any("sasrec-seed1" in v.split("+") for v in args.variants):
        _seed1_checkpoints(dataset, args.work, job.recommender_config(None))
    for variant in args.variants:
        t0 = time.perf_counter()
        config = _config(job, args.work, "labels", variant)
        key = json.dumps([config.scorers, config.candidates], sort_keys=True)
        if key not in frames:
            frames = {key: ranker_frames(dataset, config)}  # one set of frames in memory at a time
        ranker, report = train_ranker(dataset, config, frames=frames[key])
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
