"""Leak-free splits: leave-one-out for sequences, a global temporal split for timestamped logs.

A split holds the interactions a model may train on and the targets it is judged by. Every
training event of a user comes strictly before that user's targets (and, for the temporal split,
before the global cut-off), which ``tests/data/test_split.py`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError

SplitName = Literal["valid", "test", "all"]


@dataclass(frozen=True)
class Split:
    """Training interactions and held-out targets (``user_id``, ``item_id``) for one evaluation."""

    name: SplitName
    train: pl.DataFrame
    targets: pl.DataFrame
    protocol: dict[str, Any] = field(default_factory=dict)


def _check_name(which: str) -> None:
    if which not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', not {which!r}")


def leave_one_out(dataset: Dataset, which: SplitName = "test", *, min_history: int = 1) -> Split:
    """Test = each user's last event, validation = the second-to-last; train = everything before.

    For the test split the training data holds the validation event too (as the papers do). Targets
    that repeat an item of the user's history are kept, so they count as misses once history is
    excluded from the ranking: the published protocol on Amazon data.
    """
    _check_name(which)
    holdout = 1 if which == "test" else 2
    df = dataset.interactions.with_columns(pl.len().over("user_id").alias("_n"))
    cut = pl.col("_n") - holdout
    train = df.filter(pl.col("seq") < cut).drop("_n")
    targets = df.filter((pl.col("seq") == cut) & (cut >= min_history)).select(
        "user_id", "item_id", "seq", *(["timestamp"] if "timestamp" in df.columns else [])
    )
    if targets.height == 0:
        raise DataError(
            f"leave-one-out ({which}) leaves no user with a target and at least "
            f"{min_history} earlier event(s)"
        )
    protocol = {
        "split": which,
        "kind": "leave-one-out",
        "min_history": min_history,
        "repeat_targets": "kept (ranked as misses: history is excluded)",
        "train_interactions": train.height,
        "target_users": targets.height,
    }
    return Split(name=which, train=train, targets=targets, protocol=protocol)


def temporal_split(
    dataset: Dataset,
    which: SplitName = "test",
    *,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    min_history: int = 1,
) -> Split:
    """A global cut in time: train on events before it, target each user's new items after it.

    The test window is the last ``test_fraction`` of events (by timestamp); validation is the
    ``valid_fraction`` before it, with training cut at its start. Targets are the distinct items a
    user met in the window that are not in their training history, for users with at least
    ``min_history`` training events.
    """
    _check_name(which)
    if not dataset.has_timestamps:
        raise DataError(
            "a temporal split needs timestamps; this dataset has only positions (use leave-one-out)"
        )
    if not (0 < test_fraction < 1 and 0 < valid_fraction < 1 and test_fraction + valid_fraction < 1):
        raise ConfigError("test_fraction and valid_fraction must be in (0, 1) and sum to less than 1")
    df = dataset.interactions
    ts = df["timestamp"]
    t_test: datetime = ts.quantile(1 - test_fraction, interpolation="lower")  # type: ignore[assignment]
    t_valid: datetime = ts.quantile(1 - test_fraction - valid_fraction, interpolation="lower")  # type: ignore[assignment]
    start, end = (t_test, None) if which == "test" else (t_valid, t_test)
    train = df.filter(pl.col("timestamp") < start)
    window = df.filter(pl.col("timestamp") >= start)
    if end is not None:
        window = window.filter(pl.col("timestamp") < end)
    history = train.group_by("user_id").agg(pl.len().alias("_h"))
    targets = (
        window.sort("user_id", "seq")
        .join(train.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
        .unique(["user_id", "item_id"], keep="first", maintain_order=True)
        .join(history.filter(pl.col("_h") >= min_history), on="user_id", how="semi")
        .select("user_id", "item_id", "seq", "timestamp")
    )
    if targets.height == 0:
        raise DataError(
            f"the temporal split ({which}) leaves no targets; widen the window or lower min_history"
        )
    protocol = {
        "split": which,
        "kind": "global-temporal",
        "window_start": str(start),
        "window_end": str(end) if end is not None else None,
        "test_fraction": test_fraction,
        "valid_fraction": valid_fraction,
        "min_history": min_history,
        "repeat_targets": "dropped (items already in the user's training history)",
        "train_interactions": train.height,
        "target_users": targets["user_id"].n_unique(),
        "targets": targets.height,
    }
    return Split(name=which, train=train, targets=targets, protocol=protocol)


def make_split(dataset: Dataset, which: SplitName, kind: str = "auto", **options: Any) -> Split:
    """``kind`` is ``leave-one-out``, ``temporal``, or ``auto`` (temporal when timestamps exist)."""
    if kind == "auto":
        kind = "temporal" if dataset.has_timestamps else "leave-one-out"
    if kind == "leave-one-out":
        return leave_one_out(dataset, which, **options)
    if kind == "temporal":
        return temporal_split(dataset, which, **options)
    raise ConfigError(f"unknown split kind {kind!r}; valid: auto, leave-one-out, temporal")


def label_split(dataset: Dataset, fold: int = 0, kind: str = "auto") -> tuple[Dataset, Split]:
    """The validation split moved ``fold`` events back in every user's history (fold 0: the usual).

    Fold f drops each user's last f events, then takes the validation split of what is left: its
    targets are the (f + 2)-th last events, its training data everything before them. A ranker can
    learn from several folds without any of them seeing the validation or test targets' own labels.
    Leave-one-out data only (a temporal split has one cut).
    """
    if fold == 0:
        return dataset, make_split(dataset, "valid", kind)
    if fold < 0:
        raise ConfigError(f"fold must be >= 0, not {fold}")
    if kind == "temporal" or (kind == "auto" and dataset.has_timestamps):
        raise ConfigError("label folds beyond the first need a leave-one-out split")
    kept = dataset.interactions.filter(pl.col("seq") < pl.len().over("user_id") - fold)
    earlier = Dataset(
        name=f"{dataset.name}-minus-{fold}",
        items=dataset.items,
        interactions=kept,
        source={**dataset.source, "dropped_last_events": fold},
    )
    return earlier, leave_one_out(earlier, "valid")


def all_interactions(dataset: Dataset) -> Split:
    """Every interaction as training data and no targets: what a model to serve is fitted on."""
    return Split(
        name="all",
        train=dataset.interactions,
        targets=dataset.interactions.select("user_id", "item_id").clear(),
        protocol={"kind": "all interactions"},
    )


def cold_items(dataset: Dataset, fraction: float, seed: int = 0) -> pl.Series:
    """A seeded random ``fraction`` of the catalogue's item ids, to hold out entirely."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the held-out item fraction must be in (0, 1), not {fraction}")
    ids = dataset.items["item_id"]
    rng = np.random.default_rng(seed)
    pick = rng.choice(ids.len(), size=max(1, round(fraction * ids.len())), replace=False)
    return ids.gather(np.sort(pick))


def without_items(dataset: Dataset, item_ids: pl.Series) -> Dataset:
    """The dataset with every interaction of ``item_ids`` removed (the items stay in the catalogue)."""
    kept = dataset.interactions.filter(~pl.col("item_id").is_in(item_ids.implode()))
    kept = kept.sort("user_id", "seq").with_columns(pl.int_range(pl.len()).over("user_id").alias("seq"))
    return Dataset(
        name=f"{dataset.name}-without-{item_ids.len()}-items",
        items=dataset.items,
        interactions=kept,
        source={**dataset.source, "held_out_items": item_ids.len()},
    )


def cold_start_split(
    dataset: Dataset,
    which: SplitName = "test",
    *,
    item_fraction: float = 0.1,
    seed: int = 0,
    kind: str = "auto",
) -> Split:
    """Hold out ``item_fraction`` of the items entirely and keep the targets that are one of them.

    Training is the usual split's training data without any interaction of a held-out item, so a
    model has seen nothing of them but their text; targets are the usual split's targets that name
    a held-out item. CF scorers cannot recommend such items; text scorers can.
    """
    base = make_split(dataset, which, kind)
    held = cold_items(dataset, item_fraction, seed)
    train = base.train.filter(~pl.col("item_id").is_in(held.implode()))
    targets = base.targets.filter(pl.col("item_id").is_in(held.implode()))
    if targets.height == 0:
        raise DataError("no target names a held-out item; raise item_fraction")
    protocol = {
        **base.protocol,
        "kind": f"{base.protocol['kind']}+cold-items",
        "held_out_items": held.len(),
        "item_fraction": item_fraction,
        "cold_seed": seed,
        "train_interactions": train.height,
        "target_users": targets["user_id"].n_unique(),
        "targets": targets.height,
    }
    return Split(name=which, train=train, targets=targets, protocol=protocol)
