"""Retrain only the ranker over the encoder and SASRec a `recsys train` left behind, per variant.

    .venv/bin/python benchmarks/ranker_variants.py --work artifacts/scientific.work defaults bias

`recsys train` keeps the encoder and SASRec it trained for the ranker's labels and for the test
split in `<out>.work/{labels,test}`. Each variant here changes the recommender's configuration,
relearns LambdaRank from the validation folds (as `recsys train` does) and scores the hybrid on the
test split, so a change to the ranking stage costs minutes instead of a whole training. Variants:

- `defaults`: `recsys train`'s configuration as it is;
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
- `sasrec-seed1`: a second SASRec, seed 1, as one more scorer (features only);
- `gru`, `gru50`: a GRU over the same item vectors (`architecture = "gru"`, one layer) as one more
  scorer, for features only or also as a candidate source (its 50 best items);
- `sasrec-avg2`: SASRec's score and rank from the mean of two models' scores, seeds 0 and 1
  (the seed-1 checkpoints as `sasrec-seed1`'s), instead of one model's;
- `sasrec-words`: SASRec with a learned vector per word of the item text (`sasrec.words`), its
  checkpoints trained on first use (`sasrec_words*.pt`); `sasrec-words-extra`: that model beside
  the plain one, as one more scorer (features only);
- `sasrec-mask`: SASRec trained with a tenth of its input items hidden at each step
  (`sasrec.item_mask = 0.1`), its checkpoints trained on first use (`sasrec_mask*.pt`);
- `sasrec-shared`: one SASRec for every label fold, trained on the histories before all of them
  (`recsys train` before it trained one per fold), instead of one per fold;
- `single`, `ensemble5`: one LambdaRank model, or five, early-stopped on one 15% holdout of the
  users and relearned on all (`ranker.cv_folds = 0`, `ranker.ensemble`), instead of five cross-fitted;
- `holdout3`: the previous defaults: three models on one holdout, relearned on all, at least 50
  pairs per leaf, L2 1 (`cv_folds = 0`, `min_data_in_leaf = 50`, `lambda_l2 = 1`);
- `binary`: the ranker learns each candidate's log loss (is it the target?) instead of
  LambdaRank's pairwise swaps;
- `folds3`: three label folds (each user's validation event and the two before it), not two;
- `seed3`: the ranker's models of seeds 3, 4, 5 instead of 0, 1, 2 (how much the seeds move a
  comparison);
- `raw-counts`: count features (popularity, transitions, co-visitation scores) as raw counts
  instead of per 10,000 training interactions (`count_features`);
- `no-position`: without the items' mean position in histories (`item_position`, `..._gap`);
- `no-listed`: without when the items went on sale (`item_listed`, `item_listed_gap`,
  `popularity_era`); `no-era`: without `popularity_era` alone;
- `later03`, `later05`: LambdaRank also learns from each user's event after the target (a label
  fold's next event, gain 0.3 or 0.5 against the target's 1; `ranker.later_gain`, 0.5 the default);
- `fold1-half`: the second label fold's queries weigh half as much as the first's
  (`ranker.fold_weights = [1.0, 0.5]`);
- `sknn`, `sknn-features`: session-based nearest neighbours as one more scorer, with its 100 best
  items as candidates or for features only;
- `lexical`, `lexical-features`: TF-IDF word match of the candidate's text to the user's recent
  items' as one more scorer, with its 50 best items as candidates or for features only;
  `lexical-last`: the word match to the user's last item alone as one more scorer (features only);
- `seqprior`: the sequential linear scorer with its text prior (`text_prior = 0.03`: the ridge term
  pulls its item × item weights toward the items' word similarity); `seqprior-extra`: that model
  beside the plain one, as one more scorer and 100-deep candidate source; `no-seqprior`: the
  sequential linear scorer without it (`text_prior = 0`, the default before);
- `later0`: the user's next event left a negative (`later_gain = 0`, the default before);
- `seqviews`: two more views of the sequential linear scorer as features (no candidates): its
  pure transition model (`alpha = 1`: the next item from the recent items alone, no whole-history
  term) and its last item alone (`n_recent = 1`), both with the text prior;
- `texttower`, `texttower50`: a text model that reads the user's whole history, fine-tuned end to
  end on a GPU (`benchmarks/text_tower_gpu.py`), as one more scorer from its files of each user's
  best items (`artifacts/text_tower/scores_{fold0,fold1,test}.npz`; items below its 200 best
  score under them), for features only or also as a candidate source (its 50 best items);
- `seqprev`: the sequential linear scorer over each history without its last item
  (`skip_last = 1`) as one more scorer (features only): what the user was headed for before the
  latest event, beside what follows it;
- `seqnb`: the sequential linear scorer's text prior also holding each item's 20 nearest items
  in the fine-tuned encoder's embeddings (`neighbour_prior = 1`, `text_prior = 0.015`, the best
  of a small grid alone on validation);
- `history`: features over the user's whole history beside those over the last five items
  (`history_features = true`; off in today's defaults, on in those of runs 37 and 38): the
  candidate's text and ALS-factor similarity to the nearest history item and to the history's
  mean, and the transitions into it from any history item and out of it to any; `no-history`:
  without them (today's defaults);
- `encoder-holdout`: the encoder trained with its own holdout (its last two events per user held
  out, as for early stopping), one for every label fold (`<work>/labels/encoder`) and one for the
  test split (`<work>/test/encoder_holdout`), instead of on every event before each label.

Encoder and SASRec checkpoints a variant needs and the work folder lacks are trained here first,
on the data `recsys train` would have used.

Variants combine with `+` (`seqlinear+leaves63`). Variants with the same scorers and candidates
share their labelled candidates and features: only LambdaRank is relearned.

Prints the ranker's validation figures (holdout NDCG@10 within the candidates; the same per
labelled user, a user without the target among the candidates counting 0, the figure that
compares variants with different candidates; candidate recall of both folds) beside the test
metrics; writes benchmarks/results/ranker_variants.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import numpy as np
from _machine import machine

from pipelines.train import (
    TrainJob,
    encoder_options,
    encoder_run_dir,
    purpose_data,
    sasrec_checkpoint,
    test_recommender,
)
from recsys.data import TrainData, load_amazon_scientific
from recsys.evaluation import evaluate
from recsys.evaluation.report import write_json
from recsys.rank.training import fold_data, label_folds, ranker_frames, train_ranker
from recsys.recommender import HybridScorer, RecommenderConfig
from recsys.scorers import SCORERS
from recsys.scorers.base import Scorer
from recsys.scorers.sasrec import SASRecScorer

TEXT_TOWER = "artifacts/text_tower/scores"  # text_tower_gpu.py's files, copied from the GPU machine

# Per variant: options merged into scorers' specs (None removes the scorer), and candidate depths
# (0 removes the source).
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
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
    # A second SASRec (seed 1) as a scorer of its own. ``stem``: the checkpoint's file name stem
    # (`pipelines.train.sasrec_checkpoint`), trained here on first use.
    "sasrec-seed1": {"scorers": {"sasrec_seed1": {"model": "sasrec", "stem": "sasrec_seed1"}}},
    "sasrec-avg2": {"scorers": {"sasrec": {"model": "sasrec_avg"}}},
    "sasrec-words": {"scorers": {"sasrec": {"words": True, "stem": "sasrec_words"}}},
    "sasrec-words-extra": {
        "scorers": {"sasrec_words": {"model": "sasrec", "words": True, "stem": "sasrec_words"}}
    },
    "sasrec-mask": {"scorers": {"sasrec": {"item_mask": 0.1, "stem": "sasrec_mask"}}},
    "sasrec-shared": {"shared": {"sasrec": True}},
    "gru": {"scorers": {"gru": {"model": "sasrec", "architecture": "gru", "layers": 1, "stem": "gru"}}},
    "gru50": {
        "scorers": {"gru": {"model": "sasrec", "architecture": "gru", "layers": 1, "stem": "gru"}},
        "candidates": {"gru": 50},
    },
    # ``dump``: the stem of the scores files, one per label fold and one for the test split.
    "texttower": {"scorers": {"texttower": {"model": "precomputed", "dump": TEXT_TOWER}}},
    "texttower50": {
        "scorers": {"texttower": {"model": "precomputed", "dump": TEXT_TOWER}},
        "candidates": {"texttower": 50},
    },
    "encoder-holdout": {"shared": {"encoder": True}},
    "folds3": {"label_folds": 3},
    "single": {"ranker": {"cv_folds": 0, "ensemble": 1}},
    "ensemble5": {"ranker": {"cv_folds": 0, "ensemble": 5}},
    "holdout3": {"ranker": {"cv_folds": 0, "ensemble": 3, "min_data_in_leaf": 50, "lambda_l2": 1.0}},
    "binary": {"ranker": {"objective": "binary"}},
    "seed3": {"ranker": {"seed": 3}},
    "raw-counts": {"recommender": {"count_features": "raw"}},
    "no-position": {"ranker": {"exclude_features": ["item_position", "item_position_gap"]}},
    "no-listed": {"ranker": {"exclude_features": ["item_listed", "item_listed_gap", "popularity_era"]}},
    "no-era": {"ranker": {"exclude_features": ["popularity_era"]}},
    "later03": {"ranker": {"later_gain": 0.3}},
    "later05": {"ranker": {"later_gain": 0.5}},
    "fold1-half": {"ranker": {"fold_weights": [1.0, 0.5]}},
    "sknn": {"scorers": {"sknn": {"model": "sknn"}}, "candidates": {"sknn": 100}},
    "sknn-features": {"scorers": {"sknn": {"model": "sknn"}}},
    "lexical": {"scorers": {"lexical": {"model": "lexical"}}, "candidates": {"lexical": 50}},
    "lexical-features": {"scorers": {"lexical": {"model": "lexical"}}},
    "lexical-last": {"scorers": {"lexical_last": {"model": "lexical", "n_recent": 1}}},
    "seqprior": {"scorers": {"seqlinear": {"text_prior": 0.03}}},
    "no-seqprior": {"scorers": {"seqlinear": {"text_prior": 0.0}}},
    "later0": {"ranker": {"later_gain": 0.0}},
    "seqprior-extra": {
        "scorers": {"seqtext": {"model": "seqlinear", "text_prior": 0.03}},
        "candidates": {"seqtext": 100},
    },
    "seqprev": {"scorers": {"seqprev": {"model": "seqlinear", "skip_last": 1}}},
    "seqnb": {"scorers": {"seqlinear": {"neighbour_prior": 1.0, "text_prior": 0.015}}},
    "history": {"recommender": {"history_features": True}},
    "no-history": {"recommender": {"history_features": False}},
    "seqviews": {
        "scorers": {
            "seqtrans": {"model": "seqlinear", "alpha": 1.0},
            "seqlast": {"model": "seqlinear", "n_recent": 1},
        }
    },
}
SEEDS = {"sasrec_seed1": 1}  # a SASRec-family scorer's seed by name; any other: 0


class SeedAverage(Scorer):
    """SASRec's scores averaged over its checkpoint and the seed-1 one beside it (the variant
    `sasrec-avg2`; the seed-1 checkpoints are trained first, as `sasrec-seed1`'s are)."""

    name = "sasrec_avg"

    def __init__(self, checkpoint: str, **options: Any) -> None:
        super().__init__()
        path = Path(checkpoint)
        self.paths = [path, path.with_name(path.name.replace("sasrec", "sasrec_seed1"))]
        self.models: list[SASRecScorer] = []

    def fit(self, data: TrainData) -> SeedAverage:
        self.models = [SASRecScorer(checkpoint=str(p)).fit(data) for p in self.paths]
        self._data = data
        return self

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return np.asarray(np.mean([m._score(users, items) for m in self.models], axis=0, dtype=np.float32))

    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        scores = [m._score_histories(histories, items) for m in self.models]
        return np.asarray(np.mean(scores, axis=0, dtype=np.float32))


SCORERS["sasrec_avg"] = SeedAverage


class Precomputed(Scorer):
    """Scores computed elsewhere (on a GPU machine): each user's best items and their scores from
    a file (``items``, ``scores``: one row per user of the data it is fitted on, best first).
    Every other item scores just below the user's last kept one, so ranks past the file tie."""

    name = "precomputed"

    def __init__(self, scores: str, **options: Any) -> None:
        super().__init__()
        self.path = Path(scores)
        self.matrix = np.empty((0, 0), dtype=np.float32)

    def fit(self, data: TrainData) -> Precomputed:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no scores file (see benchmarks/text_tower_gpu.py)")
        z = np.load(self.path)
        items, scores = z["items"].astype(np.int64), z["scores"].astype(np.float32)
        if items.shape[0] != data.n_users or items.max() >= data.n_items:
            raise ValueError(
                f"{self.path} holds {items.shape[0]} users and items up to {items.max()}, "
                f"the data {data.n_users} users and {data.n_items} items"
            )
        finite = np.where(np.isfinite(scores), scores, np.inf).min(axis=1)
        self.matrix = np.repeat((finite - 1.0)[:, None], data.n_items, axis=1).astype(np.float32)
        np.put_along_axis(self.matrix, items, scores, axis=1)
        self._data = data
        return self

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        block = self.matrix[users]
        return block if items is None else block[:, items]


SCORERS["precomputed"] = Precomputed


def _variant(name: str) -> str:
    for part in name.split("+"):
        if part not in VARIANTS:
            raise argparse.ArgumentTypeError(f"unknown variant {part!r}; valid: {', '.join(VARIANTS)}")
    return name


def _configs(job: TrainJob, work: Path, purpose: str, variant: str) -> list[RecommenderConfig]:
    """The variant's recommender config for ``purpose``: one per label fold for the labels."""
    parts = variant.split("+")
    folds = job.recommender_config(None).label_folds
    for part in parts:
        folds = VARIANTS[part].get("label_folds", folds)
    n_configs = folds if purpose == "labels" else 1
    shared = any(VARIANTS[part].get("shared", {}).get("sasrec") for part in parts)
    holdout = any(VARIANTS[part].get("shared", {}).get("encoder") for part in parts)
    configs = []
    for fold in range(n_configs):
        sasrec = _sasrec_path(work, purpose, fold, "sasrec", shared)
        config = job.recommender_config(str(_encoder_path(work, purpose, fold, holdout)), str(sasrec))
        scorers = {name: dict(spec) for name, spec in config.scorers.items()}
        candidates, ranker = dict(config.candidates), dict(config.ranker)
        options: dict[str, Any] = {}
        for part in parts:
            options.update(VARIANTS[part].get("recommender", {}))
            for name, patch in VARIANTS[part].get("scorers", {}).items():
                if patch is None:
                    scorers.pop(name, None)
                    continue
                spec = {**scorers.get(name, {}), **patch}
                if "stem" in spec:
                    spec["checkpoint"] = str(_sasrec_path(work, purpose, fold, spec.pop("stem"), shared))
                if "dump" in spec:
                    spec["scores"] = (
                        f"{spec.pop('dump')}_{f'fold{fold}' if purpose == 'labels' else 'test'}.npz"
                    )
                scorers[name] = spec
            candidates.update(VARIANTS[part].get("candidates", {}))
            ranker.update(VARIANTS[part].get("ranker", {}))
        candidates = {name: depth for name, depth in candidates.items() if depth}
        configs.append(
            dataclasses.replace(
                config, scorers=scorers, candidates=candidates, ranker=ranker, label_folds=folds, **options
            )
        )
    return configs


def _sasrec_path(work: Path, purpose: str, fold: int, stem: str, shared: bool) -> Path:
    if shared and purpose == "labels":
        return work / purpose / f"{stem}.pt"
    return sasrec_checkpoint(work, purpose, fold, stem)


def _encoder_path(work: Path, purpose: str, fold: int, holdout: bool) -> Path:
    if holdout:
        return work / purpose / ("encoder" if purpose == "labels" else "encoder_holdout")
    return encoder_run_dir(work, purpose, fold if purpose == "labels" else None)


def _train_missing(dataset, job: TrainJob, configs: list[RecommenderConfig], purpose: str) -> None:
    """Train the encoder and SASRec checkpoints ``configs`` name and the work folder lacks, on what
    `recsys train` would have trained them on (a shared labels model: the histories before every
    fold)."""
    from recsys.config import make_config
    from recsys.text.train import train_encoder
    from recsys.text.train_config import EncoderTrainConfig

    folds = label_folds(dataset, configs[0])
    kind = configs[0].split_kind
    _, per_fold = purpose_data(dataset, purpose, folds, kind)
    for fold, config in enumerate(configs):
        encoder = Path(config.scorers["encoder"]["checkpoint"])
        if not (encoder / "encoder.json").exists():
            # ``_encoder_path``'s names: the shared labels encoder and the test one beside it
            # hold out events of their own; the others learn from every event they are given.
            holdout = encoder.name == "encoder_holdout" or (purpose == "labels" and encoder.name == "encoder")
            datasets, _ = purpose_data(dataset, purpose, folds, kind, encoder_holdout=holdout)
            options = {**encoder_options(job), "holdout": holdout}
            print(f"training {encoder} ...", flush=True)
            train_encoder(
                datasets[min(fold, len(datasets) - 1)],
                encoder,
                make_config(EncoderTrainConfig, None, options),
                resume=False,
                progress=False,
            )
        jobs = [(name, spec) for name, spec in config.scorers.items() if spec.get("model") == "sasrec"]
        for spec in config.scorers.values():
            if spec.get("model") == "sasrec_avg":  # the seed-1 model beside SASRec's checkpoint
                seed1 = SeedAverage(spec["checkpoint"]).paths[1]
                jobs.append(("sasrec_seed1", {"model": "sasrec", "checkpoint": str(seed1)}))
        for name, spec in jobs:
            path = Path(spec.get("checkpoint") or "")
            if path.exists():
                continue
            shared = purpose == "labels" and not path.stem.endswith(f"_fold{fold}")
            data = fold_data(dataset, folds, config.split_kind)[0] if shared else per_fold[fold]
            print(f"training {path} ...", flush=True)
            options = {k: v for k, v in spec.items() if k not in ("model", "checkpoint")}
            SASRecScorer(seed=SEEDS.get(name, 0), **options).fit(data).save_checkpoint(path)


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
    for variant in args.variants:
        t0 = time.perf_counter()
        configs = _configs(job, args.work, "labels", variant)
        (test_config,) = _configs(job, args.work, "test", variant)
        _train_missing(dataset, job, configs, "labels")
        _train_missing(dataset, job, [test_config], "test")
        key = json.dumps([[c.scorers, c.candidates, c.count_features] for c in configs], sort_keys=True)
        if key not in frames:
            # one set of frames in memory at a time
            frames = {key: ranker_frames(dataset, configs[0], fold_configs=configs)}
        ranker, report = train_ranker(dataset, configs[0], frames=frames[key])
        rec, data, split = test_recommender(dataset, test_config, ranker)
        test = evaluate(HybridScorer(rec).fit(data), data, split).metrics
        validation = {
            "holdout_ndcg@10": round(report["ranker"]["holdout_ndcg@10"], 4),
            **(
                {"holdout_ndcg@10_ensemble": round(report["ranker"]["holdout_ndcg@10_ensemble"], 4)}
                if "holdout_ndcg@10_ensemble" in report["ranker"]
                else {}
            ),
            **(
                {"holdout_ndcg@10_every_user": round(report["ranker"]["holdout_ndcg@10_every_user"], 4)}
                if "holdout_ndcg@10_every_user" in report["ranker"]
                else {}
            ),
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
