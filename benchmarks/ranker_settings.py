"""Ranker settings over labelled candidates and test candidates built once and kept on disk.

    .venv/bin/python benchmarks/ranker_settings.py --work artifacts/scientific.work \
        '{}' '{"cv_folds": 5}' '{"cv_folds": 5, "num_leaves": 63}'

Each argument is a JSON object of ranker options (`RankerConfig`, as under `[ranker]` in a `recsys
train` config) over `recsys train`'s defaults, optionally `"candidates": {source: n}`: fewer
candidates from a source (the frames' rows cut to what the sources then bring), and optionally
`"label_folds": n`: the ranker learns from the first n label folds of the frames only (with
`--variant folds3`, whose frames hold three, 2 against 3 compares over the same checkpoints). The
first run builds, from the encoder and SASRec checkpoints a `recsys train` left in `--work`, the
label folds' candidates and features (as `recsys train` does) and the test split's (every scorer
fitted on the test split's training data), and keeps them under `<work>/frames/<variant>/`
(`--variant`: a scorer variant of `ranker_variants.py`, default `defaults`); later runs read them,
so a setting costs only LightGBM's time.

Per setting: the validation figures (holdout NDCG@10 per labelled user: out of fold over every
user with `cv_folds`, else the 15% holdout's; with `cv_folds`, also per label fold, and fold 0's
gain over the first setting with a paired bootstrap 95% interval over its queries: fold 0, each
user's validation event, is the one every setting scores and the one nearest the test) and the
test split's Recall@10, NDCG@10, Recall@50, NDCG@50 over all its users, full ranking (a target
outside the candidates is a miss at 10 and 50, as in the hybrid, whose other items rank below
every candidate), with the NDCG@10 gain over the first setting and its paired bootstrap 95%
interval. Writes benchmarks/results/ranker_settings.json.

`--shift 1` runs the same comparison one event earlier, so that settings are chosen on
validation in the regime the test is scored in: every user's last event is dropped, the ranker
learns from label folds 1 and 2, and the "test" figures are those of each user's validation
event with every scorer fitted on the histories before it (fold 2's encoder and SASRec are
trained on first use; frames kept under `<work>/frames/groups/`, shared with
`benchmarks/label_groups.py`; with `--variant`, under `<work>/frames/groups/<variant>/`).

`--against VARIANT` compares scorer variants: the first setting runs over that variant's frames
too, and every gain is reported against it (e.g. `--variant sasrec-words --against defaults '{}'`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import numpy as np
import polars as pl
from _machine import machine
from ranker_variants import _configs, _train_missing, _variant

from pipelines.train import TrainJob, test_recommender
from recsys.atomic import atomic_writer
from recsys.config import make_config
from recsys.data import Dataset, label_split, load_amazon_scientific
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap
from recsys.rank.features import from_source
from recsys.rank.ranker import Ranker, RankerConfig
from recsys.rank.training import ranker_frames, train_ranker
from recsys.recommender import RecommenderConfig

KS = (10, 50)
# Part of every kept setting's key: results kept before the scheme changed are not read back
# (2: cross-fitting parts drawn over people, not queries).
SETTINGS_VERSION = 2
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as fh:
        frame.write_parquet(fh)


def build_frames(dataset: Any, job: TrainJob, work: Path, variant: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The label folds' frame (as ``ranker_frames``) and the test split's candidates with their
    features, ``user`` (the test user's row) and ``label`` (1 on the test target); read from
    ``<work>/frames/<variant>`` when there."""
    folder = work / "frames" / variant
    labels_path, test_path = folder / "labels.parquet", folder / "test.parquet"
    if labels_path.exists() and test_path.exists():
        return pl.read_parquet(labels_path), pl.read_parquet(test_path)
    configs = _configs(job, work, "labels", variant)
    (test_config,) = _configs(job, work, "test", variant)
    _train_missing(dataset, job, configs, "labels")
    _train_missing(dataset, job, [test_config], "test")
    t0 = time.perf_counter()
    labels, stats, _ = ranker_frames(dataset, configs[0], fold_configs=configs)
    seconds = time.perf_counter() - t0
    print(f"label frames: {labels.height} rows ({seconds:.0f} s) {json.dumps(stats)}", flush=True)
    test = test_frame(dataset, test_config)
    _write_parquet(labels, labels_path)
    _write_parquet(test, test_path)
    return labels, test


def shifted_frames(
    dataset: Dataset, job: TrainJob, work: Path, shift: int, groups: int, variant: str = "defaults"
) -> tuple[Dataset, RecommenderConfig, pl.DataFrame, pl.DataFrame, Path]:
    """The judged dataset, the label config, the label folds' frame and the judged split's frame,
    for label groups ``groups`` (``recommender.label_groups``) and ``shift`` 0 (labels from folds 0
    and 1, judged on test) or 1 (every user's last event dropped: labels from folds 1 and 2, judged
    on the validation event with every scorer fitted on the histories before it), with the scorers
    of ``variant`` (``ranker_variants.py``'s); read from ``<work>/frames/groups/shift{shift}-g{groups}``
    (``groups/<variant>/...`` for another variant) when kept there."""
    root = work / "frames" / "groups" / ("" if variant == "defaults" else variant)
    folder = root / f"shift{shift}-g{groups}"
    parts = [p for p in variant.split("+") if p != "defaults"]
    configs = _configs(job, work, "labels", "+".join((["folds3"] if shift else ["defaults"]) + parts))
    configs = [dataclasses.replace(c, label_groups=groups, label_folds=2) for c in configs]
    if shift:
        _train_missing(dataset, job, [dataclasses.replace(c, label_folds=3) for c in configs], "labels")
        judged, _ = label_split(dataset, 1, "leave-one-out")  # every user's last event dropped
        label_configs, test_config = configs[1:], configs[0]
    else:
        judged, label_configs = dataset, configs
        (test_config,) = _configs(job, work, "test", variant)
        _train_missing(dataset, job, [test_config], "test")
    labels_path = folder / "labels.parquet"
    test_path = root / f"shift{shift}-test.parquet"  # the same for every G
    plain = work / "frames" / variant  # ranker_settings.py's frames: G = 1 at shift 0
    if shift == 0 and (plain / "test.parquet").exists():
        test_path = plain / "test.parquet"
        if groups == 1 and (plain / "labels.parquet").exists():
            folder, labels_path = plain, plain / "labels.parquet"
    if labels_path.exists():
        labels = pl.read_parquet(labels_path)
    else:
        t0 = time.perf_counter()
        labels, stats, _ = ranker_frames(judged, label_configs[0], fold_configs=label_configs)
        seconds = time.perf_counter() - t0
        print(f"label frames, {groups} group(s): {labels.height} rows ({seconds:.0f} s)", flush=True)
        print(json.dumps(stats), flush=True)
        _write_parquet(labels, labels_path)
    if test_path.exists():
        test = pl.read_parquet(test_path)
    else:
        test = test_frame(judged, test_config)
        _write_parquet(test, test_path)
    return judged, label_configs[0], labels, test, folder


def test_frame(dataset: Any, config: Any) -> pl.DataFrame:
    """The test split's candidates with their features (every scorer fitted on the test split's
    training data), ``user`` (the test user's row) and ``label`` (1 on the test target)."""
    t0 = time.perf_counter()
    rec, data, split = test_recommender(dataset, config, Ranker(RankerConfig(), []))
    users, items = data.target_pairs(split)
    truth = pl.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64), "label": 1})
    parts = []
    for s in range(0, len(users), config.chunk_size):
        part = users[s : s + config.chunk_size]
        _, frame = rec.features([data.history(int(u)) for u in part], part)
        parts.append(frame.with_columns(user=pl.Series(part[frame["row"].to_numpy()].astype(np.int64))))
    test = (
        pl.concat(parts)
        .with_columns(pl.col("item").cast(pl.Int64))
        .join(truth, on=["user", "item"], how="left")
        .with_columns(pl.col("label").fill_null(0).cast(pl.Int8))
    )
    print(f"test frame: {test.height} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    return test


def test_metrics(test: pl.DataFrame, scores: np.ndarray, n_users: int) -> dict[str, np.ndarray]:
    """Per-user metrics of every test user from the candidates' scores (a target outside the
    candidates ranks after them all)."""
    ranked = (
        test.select("user", "label")
        .with_columns(score=pl.Series(scores))
        .with_columns(rank=pl.col("score").rank("ordinal", descending=True).over("user") - 1)
        .filter(pl.col("label") > 0)
    )
    rank = np.full(n_users, 10**9, np.int64)
    users = np.unique(test["user"].to_numpy())
    where = np.searchsorted(users, ranked["user"].to_numpy())
    rank[where] = ranked["rank"].to_numpy()
    return ranking_metrics(rank, np.arange(n_users), n_users, ks=KS)


def fewer_candidates(
    labels: pl.DataFrame, test: pl.DataFrame, config: RecommenderConfig, depths: dict[str, int]
) -> tuple[pl.DataFrame, pl.DataFrame, RecommenderConfig]:
    """The frames as if fewer candidates came from the sources named (``depths``: source → how many
    of its best items; 0 drops it as a source; never more than the frames were built with): the
    rows no source then brings are dropped and each ``from_<source>`` flag recomputed. Exact, as
    the ``<source>_rank`` columns are ranks over the whole catalogue."""
    unknown = sorted(set(depths) - set(config.candidates))
    wider = sorted(s for s, d in depths.items() if d > config.candidates.get(s, 0))
    if unknown or wider:
        raise SystemExit(f"candidates: {unknown or wider} not among the frames' sources or deeper than built")
    new = {**config.candidates, **depths}
    kept = pl.any_horizontal([pl.col(f"{s}_rank") < d for s, d in new.items() if d > 0])
    flags = [from_source(s, d) for s, d in new.items()]
    config = dataclasses.replace(config, candidates={s: d for s, d in new.items() if d > 0})
    return labels.filter(kept).with_columns(flags), test.filter(kept).with_columns(flags), config


def run_setting(
    dataset: Any,
    base_config: Any,
    options: dict[str, Any],
    labels: pl.DataFrame,
    test: pl.DataFrame,
    folder: Path,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One setting's figures and per-user test metrics; kept in ``folder``/settings, so a setting
    tried before (LightGBM is deterministic here) is read back instead of learned again."""
    key = json.dumps({**options, "version": SETTINGS_VERSION}, sort_keys=True)
    kept = folder / "settings" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}"
    if kept.with_suffix(".json").exists() and kept.with_suffix(".npz").exists():
        stored = np.load(kept.with_suffix(".npz"))
        return json.loads(kept.with_suffix(".json").read_text()), {m: stored[m] for m in stored.files}
    t0 = time.perf_counter()
    options = dict(options)
    held = int(labels["fold"].n_unique())  # folds 0 .. held - 1
    n_folds = int(options.pop("label_folds", held))
    if not 1 <= n_folds <= held:
        raise SystemExit(f"label_folds {n_folds}: the frames hold {held} label folds")
    labels = labels.filter(pl.col("fold") < n_folds)
    n_test_users = test["user"].n_unique()
    pool = options.pop("candidates", None)
    if pool:
        labels, test, base_config = fewer_candidates(labels, test, base_config, pool)
    config = dataclasses.replace(base_config, ranker={**base_config.ranker, **options}, label_folds=n_folds)
    make_config(RankerConfig, None, config.ranker)  # a bad option fails before any training
    ranker, report = train_ranker(dataset, config, frames=(labels, {}, {}))
    per_user = test_metrics(test, ranker.predict(test), n_test_users)
    if ranker.oof is not None:  # fold 0's labelled queries in user order
        per_user["oof_fold0"] = ranker.oof.filter(pl.col("fold") == 0)["ndcg@10"].to_numpy()
    info = report["ranker"]
    row: dict[str, Any] = {
        "validation": {
            "holdout_ndcg@10_every_user": round(info["holdout_ndcg@10_every_user"], 4),
            "by_fold": [round(v, 4) for v in info.get("holdout_ndcg@10_every_user_by_fold", [])],
            "best_rounds": info.get("best_rounds", [info["best_round"]]),
        },
        "test": {m: round(float(per_user[m].mean()), 4) for m in METRICS},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    kept.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(kept.with_suffix(".npz")) as fh:
        np.savez(fh, **per_user)  # type: ignore[arg-type]  # numpy types the first keyword as allow_pickle
    write_json(kept.with_suffix(".json"), row)
    return row, per_user


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="+", help="JSON objects of ranker options over the defaults")
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--variant", type=_variant, default="defaults", help="scorer variant")
    ap.add_argument(
        "--shift",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: judge on the validation event instead of test (every user's last event dropped, "
        "labels from folds 1 and 2)",
    )
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ranker_settings.json")
    ap.add_argument(
        "--against",
        type=_variant,
        help="a second scorer variant (e.g. defaults): the first setting also runs over its frames, "
        "and each setting's gain is reported against that",
    )
    args = ap.parse_args()
    settings = [json.loads(s) for s in args.settings]
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)

    def frames(variant: str) -> tuple[Dataset, RecommenderConfig, pl.DataFrame, pl.DataFrame, Path]:
        if args.shift:
            return shifted_frames(dataset, job, args.work, 1, 1, variant)
        labels, test = build_frames(dataset, job, args.work, variant)
        base = _configs(job, args.work, "labels", variant)[0]
        return dataset, base, labels, test, args.work / "frames" / variant

    results, first = {}, None
    if args.against:
        other, other_config, other_labels, other_test, other_folder = frames(args.against)
        row, first = run_setting(other, other_config, settings[0], other_labels, other_test, other_folder)
        results[f"{args.against}: {json.dumps(settings[0], sort_keys=True)}"] = row
        print(args.against, row, flush=True)
    judged, base_config, labels, test, folder = frames(args.variant)
    for options in settings:
        key = json.dumps(options, sort_keys=True)
        row, per_user = run_setting(judged, base_config, options, labels, test, folder)
        if first is None:
            first = per_user
        if per_user is not first:
            for part, metric in (("test", "ndcg@10"), ("validation", "oof_fold0")):
                if metric in first and metric in per_user and len(first[metric]) == len(per_user[metric]):
                    gain = paired_bootstrap(per_user[metric], first[metric])
                    row[part][f"{metric.replace('oof_', '')}_gain_over_first"] = [
                        round(gain[k], 4) for k in ("mean_difference", "low", "high")
                    ]
        results[key] = row
        print(key, row, flush=True)
    command = "python benchmarks/ranker_settings.py " + " ".join(sys.argv[1:])
    write_json(args.output, {"command": command, "machine": machine(), "results": results})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
