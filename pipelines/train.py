"""The training job behind ``recsys train``: encoder → CF scorers → ranker → one artifact folder.

Stages, each timed:

1. **encoder** and **sasrec**: fine-tune the text encoder and train the sequential model on the
   histories before every label the ranker will learn from (each user's last ``label_folds + 1``
   events held back), so their scores carry no knowledge of those labels. Each is skipped when its
   section says ``enabled = false`` or gives a ``checkpoint``.
2. **ranker**: for each label fold, fit the scorers on the histories before the labels, generate
   candidates and features, then train LambdaRank (``recsys.recommender.train_recommender``).
3. **serve**: refit the scorers on every interaction and write the artifact atomically.
4. **evaluate** (optional): refit the scorers on the test split's training data, keep the ranker,
   and rank the whole catalogue for the test targets beside every single scorer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.artifacts import save_recommender
from recsys.config import make_config
from recsys.data import Dataset, TrainData, label_split, make_split
from recsys.errors import ConfigError
from recsys.evaluation import evaluate
from recsys.recommender import HybridScorer, RecommenderConfig, train_recommender
from recsys.text.train_config import EncoderTrainConfig

log = logging.getLogger(__name__)

# Stage 1 of the encoder (the projection over the frozen transformer, full softmax) gives nearly
# all of its gain on 2 CPU cores (benchmarks/RESULTS.md); stage 2 is worth enabling on a GPU.
ENCODER_DEFAULTS: dict[str, Any] = {"epochs": 0.0, "eval_users": 2000}


@dataclass
class TrainJob:
    out: Path
    recommender: Mapping[str, Any] = field(default_factory=dict)  # RecommenderConfig options
    encoder: Mapping[str, Any] = field(default_factory=dict)  # EncoderTrainConfig options + enabled
    sasrec: Mapping[str, Any] = field(default_factory=dict)  # SASRecConfig options + enabled
    work_dir: Path | None = None  # encoder runs; default: <out>.work beside the artifact
    evaluate: bool = False
    progress: bool = True

    @property
    def work(self) -> Path:
        return self.work_dir or self.out.with_name(self.out.name + ".work")

    def recommender_config(self, checkpoint: str | None, sasrec: str | None = None) -> RecommenderConfig:
        """The configured recommender; scorers and candidates are merged over the defaults (a
        candidate depth of 0 removes that source), and a fine-tuned encoder joins as a scorer, a
        candidate source and the embeddings of the similarity features."""
        options = dict(self.recommender)
        base = RecommenderConfig()
        scorers = {**base.scorers, **options.get("scorers", {})}
        candidates = {**base.candidates, **options.get("candidates", {})}
        if checkpoint:
            scorers.setdefault("encoder", {"model": "encoder", "checkpoint": checkpoint})
            candidates.setdefault("encoder", 100)
            options.setdefault("embeddings_from", "encoder")
        if sasrec:
            scorers.setdefault("sasrec", {"model": "sasrec", "checkpoint": sasrec})
            candidates.setdefault("sasrec", 100)
        options["scorers"] = scorers
        options["candidates"] = {k: v for k, v in candidates.items() if v}
        return make_config(RecommenderConfig, None, options)


def _temporal(dataset: Dataset, split_kind: str) -> bool:
    return split_kind == "temporal" or (split_kind == "auto" and dataset.has_timestamps)


def train_encoder_stage(
    dataset: Dataset, job: TrainJob, folds: int, split_kind: str
) -> tuple[str | None, dict]:
    from recsys.text.train import train_encoder

    options = {**ENCODER_DEFAULTS, **job.encoder}
    enabled = options.pop("enabled", True)
    given = options.pop("checkpoint", None)
    if given or not enabled:
        return given, {"skipped": "checkpoint given" if given else "disabled"}
    cfg = make_config(EncoderTrainConfig, None, options)
    # Leave-one-out: hold back the labels of every fold and the encoder's own validation event.
    # Temporal: the encoder trains before the validation window (its early stopping sees the labels).
    earlier = dataset if _temporal(dataset, split_kind) else label_split(dataset, folds, split_kind)[0]
    run_dir = job.work / "encoder"
    result = train_encoder(earlier, run_dir, cfg, resume=False, progress=job.progress)
    return str(run_dir), {
        "run_dir": str(run_dir),
        "best_step": result.best_step,
        "validation": result.best_metrics,
        "stopped": result.stopped,
    }


def train_sasrec_stage(
    dataset: Dataset, job: TrainJob, folds: int, split_kind: str
) -> tuple[str | None, dict]:
    """SASRec trained once on the histories before every label (like the encoder), shared by all folds."""
    from recsys.scorers.sasrec import SASRecConfig, SASRecScorer

    options = dict(job.sasrec)
    enabled = options.pop("enabled", True)
    given = options.pop("checkpoint", None)
    if given or not enabled:
        return given, {"skipped": "checkpoint given" if given else "disabled"}
    if _temporal(dataset, split_kind):
        data = TrainData.from_split(dataset, make_split(dataset, "valid", split_kind))
    else:
        earlier, split = label_split(dataset, folds, split_kind)
        data = TrainData.from_split(earlier, split)
    scorer = SASRecScorer(make_config(SASRecConfig, None, {"progress": job.progress, **options})).fit(data)
    path = scorer.save_checkpoint(job.work / "sasrec.pt")
    return str(path), {"checkpoint": str(path), **scorer.train_info}


def run_training(dataset: Dataset, job: TrainJob) -> dict[str, Any]:
    """Train every stage into ``job.out``; returns the report (also stored in the manifest)."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    probe = job.recommender_config(None)
    checkpoint, encoder_report = train_encoder_stage(dataset, job, probe.label_folds, probe.split_kind)
    seconds["encoder"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sasrec, sasrec_report = train_sasrec_stage(dataset, job, probe.label_folds, probe.split_kind)
    seconds["sasrec"] = time.perf_counter() - t0
    config = job.recommender_config(checkpoint, sasrec)
    t0 = time.perf_counter()
    recommender, report = train_recommender(dataset, config, progress=job.progress)
    seconds["ranker (scorers, candidates, features, LambdaRank)"] = (
        time.perf_counter() - t0 - report["seconds"].get("fit_scorers_serve", 0.0)
    )
    t0 = time.perf_counter()
    report = {"encoder": encoder_report, "sasrec": sasrec_report, **report}
    save_recommender(recommender, job.out, report=report)
    seconds["serve (refit on all interactions, save)"] = (
        time.perf_counter() - t0 + report["seconds"].get("fit_scorers_serve", 0.0)
    )
    if job.evaluate:
        t0 = time.perf_counter()
        report["test"] = evaluate_on_test(dataset, recommender)
        seconds["evaluate"] = time.perf_counter() - t0
    report["stage_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    report["config"] = dataclasses.asdict(config)
    return report


def evaluate_on_test(
    dataset: Dataset, recommender: Any, split_kind: str = "auto"
) -> dict[str, dict[str, float]]:
    """Test-split metrics of the hybrid (scorers refitted on the test histories, same ranker) and of
    each of its scorers alone."""
    split = make_split(dataset, "test", split_kind)
    data = TrainData.from_split(dataset, split)
    refitted = recommender.refit(data)
    rows = {name: evaluate(scorer, data, split).metrics for name, scorer in refitted.scorers.items()}
    rows["hybrid"] = evaluate(HybridScorer(refitted).fit(data), data, split).metrics
    return rows


def check_sections(config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - {"recommender", "encoder", "sasrec", "ranker"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: recommender, encoder, sasrec, ranker")
