"""Exploratory: candidates described like the target as weaker positives for LambdaRank.

    .venv/bin/python benchmarks/soft_labels.py --work artifacts/scientific33.work \
        '{"gain": 0.2, "threshold": 0.6}' ...

Over the frames `ranker_settings.py` keeps (built from the checkpoints of a `recsys train`), each
label fold's candidates whose TF-IDF cosine to that query's target is at least ``threshold`` get
the grade ``gain`` (the target 1, the later event ``later_gain``); ``"empty": true`` also keeps the
queries whose target is not among the candidates but a similar item is. Other keys are ranker
options over the defaults. The holdout and every figure still count the target alone: out-of-fold
NDCG@10 over every labelled query and over fold 0 (each user's validation event), the test split's
Recall / NDCG at 10 and 50, and each setting's paired bootstrap gain over the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl
from _machine import machine
from ranker_settings import METRICS, build_frames, test_metrics
from ranker_variants import _configs

from pipelines.train import TrainJob
from recsys.data import load_amazon_scientific
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap
from recsys.rank.ranker import Ranker, RankerConfig
from recsys.rank.training import fold_data, model_features
from recsys.scorers.lexical import LexicalScorer


def similarity_column(dataset: Any, labels: pl.DataFrame, split_kind: str) -> pl.DataFrame:
    """``labels`` with ``sim``: each candidate's TF-IDF cosine to its query's target."""
    parts = []
    for fold in sorted(labels["fold"].unique().to_list()):
        data, split = fold_data(dataset, int(fold), split_kind)
        users, items = data.target_pairs(split)
        vectors = LexicalScorer().fit(data).vectors
        frame = labels.filter(pl.col("fold") == fold)
        target = np.full(data.n_users, -1, np.int64)
        target[users] = items
        t = target[frame["person"].to_numpy()]
        c = frame["item"].to_numpy()
        ok = t >= 0
        sim = np.zeros(len(c), np.float32)
        a, b = vectors[t[ok]], vectors[c[ok]]
        sim[ok] = np.asarray(a.multiply(b).sum(axis=1)).ravel()
        hits = frame.filter(pl.col("label") > 0)
        assert (target[hits["person"].to_numpy()] == hits["item"].to_numpy()).all(), "target rows disagree"
        parts.append(frame.with_columns(sim=pl.Series(sim)))
    return pl.concat(parts).sort("user", "item")


def run(base: Any, labels: pl.DataFrame, test: pl.DataFrame, opt: dict[str, Any]) -> Any:
    """One setting's ranker and per-user figures (test metrics, out of fold over every query and
    over fold 0, 0 where the target is not among the candidates)."""
    gain, threshold = float(opt.get("gain", 0)), float(opt.get("threshold", 1.1))
    empty = bool(opt.get("empty", False))
    frame = labels.with_columns(soft=((pl.col("sim") >= threshold) & (pl.col("label") == 0)).cast(pl.Int8))
    extra = {k: v for k, v in opt.items() if k not in ("gain", "threshold", "empty")}
    config = dataclasses.replace(base, ranker={**base.ranker, **extra})
    cfg = config.ranker_config()
    ranker = SoftRanker(cfg, model_features(config), gain=gain, empty=empty)
    ranker.fit(frame)
    per_user = test_metrics(test, ranker.predict(test), test["user"].n_unique())
    has = labels.group_by("user").agg(pl.col("label").max().alias("has"))
    assert ranker.oof is not None
    oof = ranker.oof.join(has, on="user").sort("user")
    oof = oof.with_columns(pl.when(pl.col("has") > 0).then(pl.col("ndcg@10")).otherwise(0.0).alias("ndcg@10"))
    per_user["oof_fold0"] = oof.filter(pl.col("fold") == 0)["ndcg@10"].to_numpy()
    per_user["oof_every"] = oof["ndcg@10"].to_numpy()
    return ranker, per_user


class SoftRanker(Ranker):
    """A ranker that learns four grades: the target (gain 1), the later event (``later_gain``), a
    candidate like the target (``gain``: the frame's ``soft`` column), other (0). With ``empty``
    it also learns from queries with a similar item but not the target among their candidates
    (their holdout NDCG is 1 in LightGBM's curve, a constant; zeroed after)."""

    def __init__(self, config: RankerConfig, features: list[str], *, gain: float, empty: bool) -> None:
        super().__init__(config, features)
        self.gain, self.empty = gain, empty

    def _learning_labels(self, frame: pl.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        later = frame["later"].to_numpy() > 0
        soft = frame["soft"].to_numpy() > 0
        return np.where(y > 0, 3, np.where(later, 2, np.where(soft, 1, 0))).astype(np.int8), None

    def _params(self, member: int = 0) -> dict[str, Any]:
        return {**super()._params(member), "label_gain": [0.0, self.gain, self.config.later_gain, 1.0]}

    def fit(self, frame: pl.DataFrame, *, progress: bool = False) -> Ranker:
        from recsys.rank.ranker import _Rows

        self.oof = self.oof_scores = None
        labelled_frame = frame.select("user", "fold")
        teach = (pl.col("label").max() > 0) | ((pl.col("soft").max() > 0) & self.empty)
        useful = frame.group_by("user").agg(teach.alias("u"))
        frame = frame.join(useful.filter(pl.col("u")).select("user"), on="user", how="semi").sort("user")
        users = frame["user"].unique().sort().to_numpy()
        x = frame.select(self.features).to_numpy().astype(np.float32)
        # grade 3 (label_gain 1) for the target in the holdout too: its curve must count it
        y = 3 * (frame["label"].to_numpy() > 0).astype(np.int8)
        y_learn, weight = self._learning_labels(frame, y)
        rows = _Rows(x, y, y_learn, weight, users, frame["user"].to_numpy(), frame["person"].to_numpy())
        oof = self._fit_cv(rows, progress)
        self.oof_scores = frame.select("user", "item").with_columns(score=pl.Series(oof))
        self._every_query(labelled_frame)
        self.info["holdout_ndcg@10_every_user"] = float("nan")
        return self


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="+", help='JSON objects: "gain", "threshold", "empty", ranker options')
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "soft_labels.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)
    labels, test = build_frames(dataset, job, args.work, "defaults")
    base = _configs(job, args.work, "labels", "defaults")[0]
    labels = similarity_column(dataset, labels, base.split_kind)
    for fold in (0, 1):
        f = labels.filter((pl.col("fold") == fold) & (pl.col("label") == 0))
        print(
            f"fold {fold}: share of candidates at cosine >= 0.3/0.5/0.7/0.9:",
            [round(float((f["sim"].to_numpy() >= t).mean()), 5) for t in (0.3, 0.5, 0.7, 0.9)],
            flush=True,
        )
    results, first = {}, None
    for opt in [json.loads(s) for s in args.settings]:
        ranker, per_user = run(base, labels, test, opt)
        row: dict[str, Any] = {
            "validation": {
                "oof_every_user": round(float(per_user["oof_every"].mean()), 4),
                "oof_fold0": round(float(per_user["oof_fold0"].mean()), 4),
                "best_rounds": ranker.info["best_rounds"],
            },
            "test": {m: round(float(per_user[m].mean()), 4) for m in METRICS},
        }
        if first is None:
            first = per_user
        else:
            for part, metric in (("test", "ndcg@10"), ("validation", "oof_fold0")):
                gain = paired_bootstrap(per_user[metric], first[metric])
                row[part][f"{metric}_gain"] = [round(gain[k], 4) for k in ("mean_difference", "low", "high")]
        results[json.dumps(opt, sort_keys=True)] = row
        print(json.dumps(opt), row, flush=True)
    command = "python benchmarks/soft_labels.py " + " ".join(sys.argv[1:])
    write_json(args.output, {"command": command, "machine": machine(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
