"""The evaluation job: load a dataset, split it, fit each scorer, rank the whole catalogue, report."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys.data import Dataset, TrainData, cold_start_split, make_split
from recsys.errors import ConfigError
from recsys.evaluation import EvalResult, evaluate
from recsys.scorers import SCORERS, Scorer, build_scorer

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("popularity", "covisit", "als", "bpr", "text")


@dataclass
class EvaluationJob:
    models: Sequence[str] = DEFAULT_MODELS
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    split: str = "test"
    split_kind: str = "auto"
    split_options: Mapping[str, Any] = field(default_factory=dict)
    ks: tuple[int, ...] = (10, 50)
    coverage_k: tuple[int, ...] = (10,)
    chunk_size: int = 1024
    progress: bool = True
    cold_items: float = 0.0  # > 0: the cold-start protocol, holding out this share of the items
    cold_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in SCORERS and m != "hybrid"]
        if unknown:
            raise ConfigError(f"unknown model(s) {unknown}; valid models: {', '.join(SCORERS)}")
        if not self.models:
            raise ConfigError("no models to evaluate")
        extra = sorted(set(self.model_options) - set(SCORERS) - {"hybrid"})
        if extra:
            raise ConfigError(f"options given for unknown model(s) {extra}; valid: {', '.join(SCORERS)}")


def hybrid_scorer(options: Mapping[str, Any], data: TrainData) -> Scorer:
    """The ranking stage of an artifact, its scorers refitted on this evaluation's training data."""
    from recsys.artifacts import load_recommender
    from recsys.recommender import HybridScorer

    unknown = sorted(set(options) - {"artifact", "progress"})
    if unknown or "artifact" not in options:
        raise ConfigError("the 'hybrid' model takes one option, artifact: --set hybrid.artifact=DIR")
    recommender = load_recommender(options["artifact"])
    pretrained = [n for n, spec in recommender.config.scorers.items() if spec.get("checkpoint")]
    if pretrained:
        log.warning(
            "hybrid: %s keep the weights the artifact was trained with; if those saw the targets "
            "evaluated here the figures are optimistic (`recsys train --evaluate` retrains them "
            "on the test split's training data)",
            ", ".join(pretrained),
        )
    if recommender.data.fingerprint != data.fingerprint:
        recommender = recommender.refit(data)
    return HybridScorer(recommender).fit(data)


def run_evaluation(dataset: Dataset, job: EvaluationJob) -> dict[str, Any]:
    """Evaluate every model of ``job`` on ``dataset``; returns the JSON-shaped report."""
    t_start = time.perf_counter()
    if job.cold_items:
        split = cold_start_split(
            dataset,
            job.split,  # type: ignore[arg-type]
            item_fraction=job.cold_items,
            seed=job.cold_seed,
            kind=job.split_kind,
        )
    else:
        split = make_split(dataset, job.split, job.split_kind, **job.split_options)  # type: ignore[arg-type]
    data = TrainData.from_split(dataset, split)
    t_prep = time.perf_counter() - t_start
    results: dict[str, EvalResult] = {}
    for name in job.models:
        options = dict(job.model_options.get(name, {}))
        if name == "text":
            options.setdefault("progress", job.progress)
        t0 = time.perf_counter()
        scorer = hybrid_scorer(options, data) if name == "hybrid" else build_scorer(name, options).fit(data)
        fit_s = time.perf_counter() - t0
        res = evaluate(
            scorer,
            data,
            split,
            ks=job.ks,
            coverage_k=job.coverage_k,
            chunk_size=job.chunk_size,
            progress=job.progress,
        )
        res.seconds = {"fit": round(fit_s, 3), "score": round(res.seconds["score"], 3)}
        log.info(
            "%s: fit %.1fs, evaluate %.1fs, recall@10 %.4f",
            name,
            fit_s,
            res.seconds["score"],
            res.metrics.get("recall@10", float("nan")),
        )
        results[name] = res
    first = next(iter(results.values()))
    protocol = {
        "dataset": dataset.summary(),
        **{k: v for k, v in first.protocol.items()},
    }
    return {
        "protocol": protocol,
        "results": {name: r.metrics for name, r in results.items()},
        "slices": {name: r.slices for name, r in results.items()},
        "models": {name: {"config": r.config, "seconds": r.seconds} for name, r in results.items()},
        "timing": {"prepare_s": round(t_prep, 3), "total_s": round(time.perf_counter() - t_start, 3)},
    }
