"""The training job behind ``recsys train``: models → ranker → one artifact folder.

1. **models for the labels**: the encoder (fine-tuned) is trained on the histories before every
   label the ranker learns from (each user's last ``label_folds`` events and one more held back),
   SASRec on the histories before each fold's labels (one model per fold, as the CF scorers are
   fitted per fold), so their scores know nothing of those labels.
2. **ranker**: for each label fold, the CF scorers are fitted on the histories before its labels;
   candidates and features follow; LambdaRank learns from all folds
   (``recsys.rank.training.train_ranker``).
3. **models for serving**: encoder and SASRec retrained on every interaction; every scorer fitted
   on every interaction; the artifact is written atomically with the ranker.
4. **evaluate** (optional): encoder and SASRec trained once more on the test split's training data,
   every scorer fitted on it, the same ranker: the test figures, beside each scorer alone.

Each model sees, in every purpose, the same distance between what it learned from and the event it
predicts: the encoder holds out its own early-stopping event each time (three events from its last
training target to a fold-0 label, a test target, or a served user's next event); SASRec, trained
for a fixed number of epochs, learns up to the event before each label, test target or served
request. The ranker learns how far to trust each score, so its labels must see the scores as the
test and serving see them.

An encoder or SASRec ``checkpoint`` given in the config is used as is for every purpose.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.artifacts import save_recommender
from recsys.config import make_config
from recsys.data import Dataset, Split, TrainData, all_interactions, label_split, make_split
from recsys.errors import ConfigError
from recsys.evaluation import evaluate
from recsys.rank.ranker import Ranker
from recsys.rank.training import fold_data, label_folds, train_ranker
from recsys.recommender import HybridScorer, Recommender, RecommenderConfig, fit_scorers
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
    # With ``evaluate``: also save the test-split recommender (every model fitted without each
    # user's last event) here, to serve held-out users in an A/B simulation (``recsys ab simulate``).
    holdout_out: Path | None = None
    progress: bool = True

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], out: Path, overrides: Sequence[str] = (), **options: Any
    ) -> TrainJob:
        """A job from a TOML document's sections (``[recommender]``, ``[ranker]``, ``[encoder]``,
        ``[sasrec]``) with ``SECTION.KEY=VALUE`` overrides; ``[ranker]`` joins the recommender's."""
        from recsys.config import apply_overrides

        check_sections(config)
        merged = apply_overrides(
            {"recommender": {}, "encoder": {}, "sasrec": {}, "ranker": {}, **config}, list(overrides)
        )
        recommender = dict(merged["recommender"])
        if merged["ranker"]:
            recommender["ranker"] = {**recommender.get("ranker", {}), **merged["ranker"]}
        return cls(
            out=out, recommender=recommender, encoder=merged["encoder"], sasrec=merged["sasrec"], **options
        )

    @property
    def work(self) -> Path:
        return self.work_dir or self.out.with_name(self.out.name + ".work")

    def recommender_config(self, checkpoint: str | None, sasrec: str | None = None) -> RecommenderConfig:
        """The configured recommender; scorers and candidates (and cold candidates) are merged over
        the defaults (a depth of 0 removes that source), and a fine-tuned encoder joins as a scorer,
        a candidate source and the embeddings of the similarity features."""
        options = dict(self.recommender)
        base = RecommenderConfig()
        scorers = {**base.scorers, **options.get("scorers", {})}
        # Zeros stay until the end, so that a depth of 0 also removes the encoder or SASRec.
        candidates = {**base.candidates, **options.get("candidates", {})}
        if checkpoint:
            # The encoder's learned prior per item is popularity, which the ranker has as features
            # already; without it the encoder's score and rank are text match alone. The ranker
            # learned more from that (holdout NDCG@10 0.234 against 0.218 with the earlier SASRec,
            # level with today's, and ahead on test both times: benchmarks/RESULTS.md).
            scorers.setdefault("encoder", {"model": "encoder", "checkpoint": checkpoint, "item_bias": False})
            candidates.setdefault("encoder", 100)
            options.setdefault("embeddings_from", "encoder")
        if sasrec:
            scorers.setdefault("sasrec", {"model": "sasrec", "checkpoint": sasrec})
            candidates.setdefault("sasrec", 100)
        options["scorers"] = scorers
        options["candidates"] = _depths(candidates)
        options["cold_candidates"] = _depths(base.cold_candidates, options.get("cold_candidates", {}))
        return make_config(RecommenderConfig, None, options)


def _depths(*layers: Mapping[str, int]) -> dict[str, int]:
    """Candidate depths, each layer over the ones before it, the sources at depth 0 removed."""
    merged: dict[str, int] = {}
    for layer in layers:
        merged.update(layer)
    return {k: v for k, v in merged.items() if v}


def _temporal(dataset: Dataset, split_kind: str) -> bool:
    return split_kind == "temporal" or (split_kind == "auto" and dataset.has_timestamps)


def encoder_options(job: TrainJob) -> dict[str, Any]:
    """The encoder's settings in ``recsys train``: the job's over ``ENCODER_DEFAULTS``. Without a
    stage 2 there is nothing to stop early, so by default the encoder then learns from every
    interaction it is given (``holdout = false``): up to the event before each label, test target
    or served request, as SASRec does."""
    options = {**ENCODER_DEFAULTS, **job.encoder}
    options.setdefault("holdout", float(options["epochs"]) > 0)
    return options


def train_encoder_stage(dataset: Dataset, job: TrainJob, run_dir: Path) -> tuple[str | None, dict]:
    """Fine-tune the encoder on ``dataset`` into ``run_dir`` (with a holdout: its own validation
    events held out for early stopping)."""
    from recsys.text.train import train_encoder

    options = encoder_options(job)
    enabled = options.pop("enabled", True)
    given = options.pop("checkpoint", None)
    if given or not enabled:
        return given, {"skipped": "checkpoint given" if given else "disabled"}
    cfg = make_config(EncoderTrainConfig, None, options)
    result = train_encoder(dataset, run_dir, cfg, resume=False, progress=job.progress)
    return str(run_dir), {
        "run_dir": str(run_dir),
        "best_step": result.best_step,
        "validation": result.best_metrics,
        "stopped": result.stopped,
    }


def sasrec_checkpoint(work: Path, purpose: str, fold: int = 0, stem: str = "sasrec") -> Path:
    """Where ``recsys train`` keeps SASRec for ``purpose``: one per label fold for the labels."""
    return work / purpose / (f"{stem}_fold{fold}.pt" if purpose == "labels" else f"{stem}.pt")


def encoder_run_dir(work: Path, purpose: str, fold: int | None = None) -> Path:
    """Where ``recsys train`` keeps the encoder for ``purpose`` (and label fold, where each fold
    has its own)."""
    return work / purpose / ("encoder" if fold is None else f"encoder_fold{fold}")


def train_sasrec_stage(data: TrainData, job: TrainJob, path: Path) -> tuple[str | None, dict]:
    """Train SASRec on ``data``'s histories and save its checkpoint at ``path``."""
    from recsys.scorers.sasrec import SASRecConfig, SASRecScorer

    options = dict(job.sasrec)
    enabled = options.pop("enabled", True)
    given = options.pop("checkpoint", None)
    if given or not enabled:
        return given, {"skipped": "checkpoint given" if given else "disabled"}
    scorer = SASRecScorer(make_config(SASRecConfig, None, {"progress": job.progress, **options})).fit(data)
    scorer.save_checkpoint(path)
    return str(path), {"checkpoint": str(path), **scorer.train_info}


def _as_dataset(dataset: Dataset, split: Split) -> Dataset:
    """A split's training interactions as a dataset of their own (for a model that splits again)."""
    return Dataset(
        name=f"{dataset.name}-{split.name}-train", items=dataset.items, interactions=split.train, source={}
    )


def purpose_data(
    dataset: Dataset, purpose: str, folds: int, split_kind: str, encoder_holdout: bool = False
) -> tuple[list[Dataset], list[TrainData]]:
    """What the encoder (datasets) and SASRec (histories) learn from for ``purpose``: one of each
    per label fold for the labels, else one; with ``encoder_holdout`` one encoder for every fold,
    whose own holdout then lies before every label. See ``trained_models``."""
    if purpose == "labels":
        if not encoder_holdout:
            encoders = [_as_dataset(*label_split(dataset, f, split_kind)) for f in range(folds)]
        elif _temporal(dataset, split_kind):
            encoders = [_as_dataset(dataset, make_split(dataset, "valid", split_kind))]
        else:
            encoders = [label_split(dataset, folds, split_kind)[0]]
        return encoders, [fold_data(dataset, f, split_kind)[0] for f in range(folds)]
    if purpose == "test":
        split = make_split(dataset, "test", split_kind)
        return [_as_dataset(dataset, split)], [TrainData.from_split(dataset, split)]
    return [dataset], [TrainData.from_split(dataset, all_interactions(dataset))]


def trained_models(
    dataset: Dataset, job: TrainJob, purpose: str, folds: int, split_kind: str
) -> tuple[list[RecommenderConfig], dict, dict]:
    """The encoder and SASRec trained for ``purpose``, and the recommender configs that use them:
    one per label fold for ``labels``, else one.

    - ``labels``: on the histories before each fold's labels (temporal data: before the validation
      window); an encoder that holds out events of its own for early stopping is trained once, on
      the histories before every fold's labels;
    - ``test``: on the test split's training data (``--evaluate``);
    - ``serve``: on every interaction (the artifact).
    """
    seconds: dict[str, float] = {}
    holdout = bool(encoder_options(job)["holdout"])
    encoder_data, sasrec_data = purpose_data(dataset, purpose, folds, split_kind, holdout)
    per_fold = purpose == "labels"
    t0 = time.perf_counter()
    encoders, encoder_reports = [], {}
    for fold, encoder_dataset in enumerate(encoder_data):
        run_dir = encoder_run_dir(job.work, purpose, fold if per_fold and not holdout else None)
        path, encoder_reports[f"fold {fold}"] = train_encoder_stage(encoder_dataset, job, run_dir)
        encoders.append(path)
    seconds[f"encoder ({purpose})"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sasrecs, sasrec_reports = [], {}
    for fold, data in enumerate(sasrec_data):
        path, sasrec_reports[f"fold {fold}"] = train_sasrec_stage(
            data, job, sasrec_checkpoint(job.work, purpose, fold)
        )
        sasrecs.append(path)
    seconds[f"sasrec ({purpose})"] = time.perf_counter() - t0
    report = {
        "encoder": encoder_reports if len(encoders) > 1 else encoder_reports["fold 0"],
        "sasrec": sasrec_reports if per_fold else sasrec_reports["fold 0"],
    }
    configs = [
        job.recommender_config(encoders[min(fold, len(encoders) - 1)], sasrec)
        for fold, sasrec in enumerate(sasrecs)
    ]
    return configs, report, seconds


def run_training(dataset: Dataset, job: TrainJob) -> dict[str, Any]:
    """Train every stage into ``job.out``; returns the report (also stored in the manifest)."""
    probe = job.recommender_config(None)
    folds, kind = label_folds(dataset, probe), probe.split_kind
    configs, models, seconds = trained_models(dataset, job, "labels", folds, kind)
    t0 = time.perf_counter()
    ranker, report = train_ranker(dataset, configs[0], progress=job.progress, fold_configs=configs)
    seconds["ranker (scorers, candidates, features, LambdaRank)"] = time.perf_counter() - t0
    report["models"] = {"labels": models}
    (serve_config,), report["models"]["serve"], more = trained_models(dataset, job, "serve", folds, kind)
    seconds.update(more)
    t0 = time.perf_counter()
    serve_data = TrainData.from_split(dataset, all_interactions(dataset))
    recommender = Recommender(serve_config, serve_data, fit_scorers(serve_config, serve_data), ranker)
    save_recommender(recommender, job.out, report=report)
    seconds["serve (fit on all interactions, save)"] = time.perf_counter() - t0
    if job.evaluate:
        (test_config,), report["models"]["test"], more = trained_models(dataset, job, "test", folds, kind)
        seconds.update(more)
        t0 = time.perf_counter()
        rec, data, split = test_recommender(dataset, test_config, ranker, kind)
        report["test"] = evaluate_recommender(rec, data, split)
        seconds["evaluate"] = time.perf_counter() - t0
        if job.holdout_out is not None:
            save_recommender(
                rec, job.holdout_out, report={"holdout_of": str(job.out), "test": report["test"]}
            )
    report["stage_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    report["config"] = dataclasses.asdict(serve_config)
    return report


def test_recommender(
    dataset: Dataset, config: RecommenderConfig, ranker: Ranker, split_kind: str = "auto"
) -> tuple[Recommender, TrainData, Split]:
    """The recommender as it would have been on the test split's training data (same ranker)."""
    split = make_split(dataset, "test", split_kind)
    data = TrainData.from_split(dataset, split)
    return Recommender(config, data, fit_scorers(config, data), ranker), data, split


def evaluate_on_test(
    dataset: Dataset, config: RecommenderConfig, ranker: Ranker, split_kind: str = "auto"
) -> dict[str, dict[str, float]]:
    """Test-split metrics of the hybrid and of each of its scorers alone, with every model (CF and
    pretrained) fitted on the test split's training data only."""
    return evaluate_recommender(*test_recommender(dataset, config, ranker, split_kind))


def evaluate_recommender(rec: Recommender, data: TrainData, split: Split) -> dict[str, dict[str, float]]:
    """``rec`` (fitted on ``data``) and each of its scorers alone, on ``split``'s targets."""
    rows = {name: evaluate(scorer, data, split).metrics for name, scorer in rec.scorers.items()}
    rows["hybrid"] = evaluate(HybridScorer(rec).fit(data), data, split).metrics
    return rows


def check_sections(config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - {"recommender", "encoder", "sasrec", "ranker"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: recommender, encoder, sasrec, ranker")
