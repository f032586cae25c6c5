"""Training the ranking stage: labelled candidates from held-back events, then LambdaRank.

``train_ranker`` learns the ranker from each user's last ``label_folds`` events (the scorers fitted
on the histories before them, so their scores know nothing of the labels); ``train_recommender``
adds the scorers refitted on the serving data and returns a ready ``Recommender``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.split import Split, label_split, make_split
from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.rank.candidates import merge_candidates, score_chunk
from recsys.rank.features import CATEGORICAL, ItemSide, build_features, feature_names
from recsys.rank.ranker import Ranker
from recsys.recommender import Recommender, RecommenderConfig, fit_scorers
from recsys.scorers.base import Scorer

log = logging.getLogger(__name__)


def label_frame(
    config: RecommenderConfig,
    scorers: dict[str, Scorer],
    data: TrainData,
    split: Split,
    side: ItemSide,
    later: Split | None = None,
    users: np.ndarray | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Features of every target user of ``split``, ``label`` = 1 on their targets; and candidate recall.

    ``users``: these user rows' targets alone (default: every target user, or the seeded sample
    of ``config.label_users``).

    ``later = 1`` marks each user's event after the target (the targets of ``later``, the split of
    the fold before; none for fold 0, whose next event is the test target): a weaker positive the
    ranker may learn from (``ranker.later_gain``). Candidate recall is the share of targets among a
    source's best N items (N = 20, 50, 100, 200 and the configured depth) and among the merged
    candidates: the ceiling of the ranker.
    """
    frame, counts, hits = _label_frame(config, scorers, data, split, side, later, users)
    return frame, _label_stats(counts, hits)


def _label_frame(
    config: RecommenderConfig,
    scorers: dict[str, Scorer],
    data: TrainData,
    split: Split,
    side: ItemSide,
    later: Split | None,
    users: np.ndarray | None,
) -> tuple[pl.DataFrame, dict[str, int], dict[str, dict[int, int]]]:
    """``label_frame``'s frame with its counts (users, targets, pairs) and the targets each source
    finds at each depth (``"merged"``: among the candidates, under key 0)."""
    import scipy.sparse as sp
    from tqdm.auto import tqdm

    target_users, target_items = data.target_pairs(split)
    users_all = sampled_users(config, target_users) if users is None else np.unique(users)
    keep = np.isin(target_users, users_all)
    target_users, target_items = target_users[keep], target_items[keep]
    truth = sp.csr_matrix(
        (np.ones(len(target_users), np.int8), (target_users, target_items)),
        shape=(data.n_users, data.n_items),
    )
    truth.data[:] = 1
    after = _later_matrix(data, later, users_all)
    frames = []
    depths = sorted({20, 50, 100, 200} | set(config.candidates.values()))
    hits = {name: dict.fromkeys(depths, 0) for name in scorers}
    for s in tqdm(range(0, len(users_all), config.chunk_size), desc="candidates+features", leave=False):
        users = users_all[s : s + config.chunk_size]
        chunk = score_chunk(scorers, [data.history(int(u)) for u in users], users)
        t_rows, t_items = truth[users].nonzero()
        for name in scorers:
            t_rank = chunk.rank_of(name, t_rows, t_items)
            t_ok = np.isfinite(chunk.scores[name][t_rows, t_items])
            for d in depths:
                hits[name][d] += int(((t_rank < d) & t_ok).sum())
        rows, cand = merge_candidates(chunk, config.candidates, config.cold_candidates)
        frame = build_features(chunk, rows, cand, side, config.candidates, config.history_features)
        # merge_candidates and build_features both order pairs by (row, item).
        label = np.asarray(truth[users[rows], cand]).ravel().astype(np.int8)
        next_one = np.asarray(after[users[rows], cand]).ravel().astype(np.int8)
        frames.append(
            frame.with_columns(user=pl.Series(users[rows]), label=pl.Series(label), later=pl.Series(next_one))
        )
    full = pl.concat(frames)
    hits["merged"] = {0: int(full["label"].sum())}
    counts = {"users": len(users_all), "targets": len(target_users), "pairs": full.height}
    return full, counts, hits


def _label_stats(counts: dict[str, int], hits: dict[str, dict[int, int]]) -> dict[str, Any]:
    """``label_frame``'s report from its counts: the share of targets among each source's best N
    items and among the merged candidates (``hits["merged"][0]``)."""
    n = max(counts["targets"], 1)
    recall = {
        name: {f"@{d}": round(h / n, 4) for d, h in per.items()}
        for name, per in hits.items()
        if name != "merged"
    }
    return {
        **counts,
        "pairs_per_user": round(counts["pairs"] / max(counts["users"], 1), 1),
        "candidate_recall": {"merged": round(hits["merged"][0] / n, 4), **recall},
    }


def sampled_users(config: RecommenderConfig, target_users: np.ndarray) -> np.ndarray:
    """The user rows whose labels the ranker learns from: every target user, or a seeded sample of
    ``config.label_users`` of them."""
    users = np.unique(target_users)
    if 0 < config.label_users < len(users):
        users = np.sort(np.random.default_rng(0).choice(users, config.label_users, replace=False))
    return users


def _later_matrix(data: TrainData, later: Split | None, users: np.ndarray) -> Any:
    """users × items, 1 at each of ``users``' targets in ``later`` (empty without one)."""
    import scipy.sparse as sp

    shape = (data.n_users, data.n_items)
    if later is None:
        return sp.csr_matrix(shape, dtype=np.int8)
    u, i = data.target_pairs(later)
    keep = (u >= 0) & (i >= 0)
    keep[keep] = np.isin(u[keep], users)
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), np.int8), (u[keep], i[keep])), shape=shape)
    matrix.data[:] = 1
    return matrix


def _temporal(dataset: Dataset, config: RecommenderConfig) -> bool:
    """Whether ``config``'s labels are held out by a temporal split of ``dataset``."""
    return config.split_kind == "temporal" or (config.split_kind == "auto" and dataset.has_timestamps)


def label_folds(dataset: Dataset, config: RecommenderConfig) -> int:
    """``config.label_folds``, or 1 for a temporal split (it has one validation window)."""
    if _temporal(dataset, config) and config.label_folds > 1:
        log.info("temporal split: the ranker learns from the validation window only (label_folds = 1)")
        return 1
    return config.label_folds


def fold_data(dataset: Dataset, fold: int, split_kind: str) -> tuple[TrainData, Split]:
    """The histories before label fold ``fold``'s labels, and the split that holds those labels."""
    data, split = label_split(dataset, fold, split_kind)
    return TrainData.from_split(data, split), split


def ranker_frames(
    dataset: Dataset,
    config: RecommenderConfig,
    *,
    progress: bool = False,
    fold_configs: Sequence[RecommenderConfig] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, float]]:
    """The labelled candidates of every fold, one frame (a query per (fold, user), ``fold`` its
    number), with candidate recall per fold and the seconds spent fitting scorers and building
    candidates and features. Fold f > 0 marks each user's next event, fold f − 1's target, as
    ``later`` (``label_frame``).

    For each fold the scorers are fitted on the histories before its labels; candidates and
    features follow. ``fold_configs`` gives each fold a config of its own (the same scorers, with
    checkpoints trained on that fold's histories); default: ``config`` for every fold."""
    times: dict[str, float] = {"fit_scorers_labels": 0.0, "candidates_features": 0.0}
    frames, stats = [], {}
    n_folds = label_folds(dataset, config)
    if fold_configs is not None and len(fold_configs) != n_folds:
        raise ConfigError(f"{len(fold_configs)} fold configs for {n_folds} label folds")
    n_groups = label_groups(dataset, config)
    for fold in range(n_folds):
        if fold_configs is not None:
            config = fold_configs[fold]
        later = label_split(dataset, fold - 1, config.split_kind)[1] if fold else None
        if n_groups == 1:
            t0 = time.perf_counter()
            label_data, fold_split = fold_data(dataset, fold, config.split_kind)
            scorers = fit_scorers(config, label_data, progress)
            side = ItemSide.from_scorers(label_data, scorers, config.embeddings_from, config.count_features)
            times["fit_scorers_labels"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            frame, stats[f"fold {fold}"] = label_frame(config, scorers, label_data, fold_split, side, later)
            times["candidates_features"] += time.perf_counter() - t0
            n_users = label_data.n_users
        else:
            frame, stats[f"fold {fold}"], n_users = _grouped_frame(
                dataset, config, fold, n_groups, later, times, progress
            )
        # A query is one (fold, user): rows of different folds never share a LambdaRank group;
        # ``person`` keeps the user, whose folds cross-fitting keeps together.
        frames.append(
            frame.with_columns(
                pl.col("user").cast(pl.Int64) + fold * (n_users + 1),
                person=pl.col("user").cast(pl.Int64),
                fold=pl.lit(fold, pl.Int8),
            )
        )
    return pl.concat(frames), stats, times


def label_groups(dataset: Dataset, config: RecommenderConfig) -> int:
    """``config.label_groups``, or 1 for a temporal split (there the other users' later events are
    the future)."""
    if _temporal(dataset, config) and config.label_groups > 1:
        log.info(
            "temporal split: scorers for the labels see the events before the cut only (label_groups = 1)"
        )
        return 1
    return config.label_groups


def assign_groups(users: np.ndarray, n_rows: int, n_groups: int) -> np.ndarray:
    """(n_rows,) each of ``users``' label group, in a seeded random order (−1 for other rows)."""
    group_of = np.full(n_rows, -1, np.int64)
    group_of[np.random.default_rng(0).permutation(users)] = np.arange(len(users)) % n_groups
    return group_of


def _grouped_frame(
    dataset: Dataset,
    config: RecommenderConfig,
    fold: int,
    n_groups: int,
    later: Split | None,
    times: dict[str, float],
    progress: bool,
) -> tuple[pl.DataFrame, dict[str, Any], int]:
    """Label fold ``fold``'s frame with the labelled users in ``n_groups`` groups: the scorers that
    give a group its features are fitted on that group's histories before their labels and on every
    other user's history as the test split holds it (all but the last event), so they have learned
    from as much as the scorers the ranker meets at test time, and never from a label they are
    asked about. Returns the frame (rows by user, then item), its report, and the number of users."""
    t0 = time.perf_counter()
    _, fold_split = label_split(dataset, fold, config.split_kind)
    base = make_split(dataset, "test", "leave-one-out").train  # every user but their last event
    everyone = TrainData.from_split(dataset, fold_split)
    users = sampled_users(config, everyone.target_pairs(fold_split)[0])
    group_of = assign_groups(users, everyone.n_users, n_groups)
    times["fit_scorers_labels"] += time.perf_counter() - t0
    frames, counts = [], {"users": 0, "targets": 0, "pairs": 0}
    hits: dict[str, dict[int, int]] = {}
    for g in range(n_groups):
        t0 = time.perf_counter()
        mine = users[group_of[users] == g]
        ids = everyone.users.ids.gather(mine)
        train = pl.concat(
            [
                fold_split.train.filter(pl.col("user_id").is_in(ids.implode())),
                base.filter(~pl.col("user_id").is_in(ids.implode())).select(fold_split.train.columns),
            ]
        )
        split = Split(name="valid", train=train, targets=fold_split.targets, protocol=fold_split.protocol)
        data = TrainData.from_split(dataset, split)
        scorers = fit_scorers(config, data, progress)
        side = ItemSide.from_scorers(data, scorers, config.embeddings_from, config.count_features)
        times["fit_scorers_labels"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        frame, part, found = _label_frame(config, scorers, data, split, side, later, mine)
        frames.append(frame)
        for key in counts:
            counts[key] += part[key]
        for name, per in found.items():
            total = hits.setdefault(name, dict.fromkeys(per, 0))
            for depth, h in per.items():
                total[depth] += h
        times["candidates_features"] += time.perf_counter() - t0
    frame = pl.concat(frames).sort("user", "item", maintain_order=True)
    return frame, {**_label_stats(counts, hits), "groups": n_groups}, everyone.n_users


def model_features(config: RecommenderConfig) -> list[str]:
    """The ranker's input columns under ``config``: every feature of its scorers and candidate
    sources less ``ranker.exclude_features``, then the code columns ``ranker.categorical`` names."""
    ranker_config = config.ranker_config()
    names = feature_names(list(config.scorers), config.candidates, config.history_features)
    unknown = sorted(set(ranker_config.exclude_features) - set(names))
    if unknown:
        raise ConfigError(f"ranker.exclude_features names unknown features {unknown}; features: {names}")
    codes = [c for c in ranker_config.categorical if c not in CATEGORICAL]
    if codes:
        valid = ", ".join(CATEGORICAL)
        raise ConfigError(f"ranker.categorical names {codes}; the code columns it may name: {valid}")
    kept = [f for f in names if f not in ranker_config.exclude_features]
    return kept + [c for c in CATEGORICAL if c in ranker_config.categorical]


def train_ranker(
    dataset: Dataset,
    config: RecommenderConfig,
    *,
    progress: bool = False,
    frames: tuple[pl.DataFrame, dict[str, Any], dict[str, float]] | None = None,
    fold_configs: Sequence[RecommenderConfig] | None = None,
) -> tuple[Ranker, dict[str, Any]]:
    """Learn the ranker from ``config.label_folds`` labelled events per user (``ranker_frames``,
    with ``fold_configs`` where each fold has its own; or ``frames``, what it returned for the
    same scorers and candidates, to try ranker settings).

    LambdaRank learns from all folds at once. Returns the ranker and a report: stage times,
    candidate recall per fold, early-stopping figures and feature importance.
    """
    frame, stats, times = frames or ranker_frames(
        dataset, config, progress=progress, fold_configs=fold_configs
    )
    times = dict(times)
    t0 = time.perf_counter()
    ranker_config = config.ranker_config()
    ranker = Ranker(ranker_config, model_features(config))
    ranker.fit(frame, progress=progress)
    times["ranker"] = time.perf_counter() - t0
    report = {
        "validation": stats,
        "ranker": ranker.info,
        "importance": ranker.importance(),
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    return ranker, report


def train_recommender(
    dataset: Dataset,
    config: RecommenderConfig | None = None,
    *,
    serve_split: Split | None = None,
    progress: bool = False,
) -> tuple[Recommender, dict[str, Any]]:
    """``train_ranker``, then the scorers refitted on ``serve_split``'s training data (default:
    every interaction) for the returned ``Recommender``. Scorers loaded from a checkpoint keep
    their weights: ``pipelines.train`` retrains those for each purpose."""
    from recsys.data.split import all_interactions

    config = config or RecommenderConfig()
    ranker, report = train_ranker(dataset, config, progress=progress)
    t0 = time.perf_counter()
    serve_data = TrainData.from_split(dataset, serve_split or all_interactions(dataset))
    recommender = Recommender(config, serve_data, fit_scorers(config, serve_data, progress), ranker)
    report["seconds"]["fit_scorers_serve"] = round(time.perf_counter() - t0, 1)
    return recommender, report
