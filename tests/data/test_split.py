"""Splits: no validation or test event ever reaches training."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.data import Dataset, TrainData, leave_one_out, make_split, temporal_split
from recsys.data.schema import validate_interactions, validate_items
from recsys.errors import ConfigError, DataError


def tiny() -> Dataset:
    items = validate_items(pl.DataFrame({"item_id": list("abcdef"), "title": list("ABCDEF")}))
    inter = validate_interactions(
        pl.DataFrame(
            {
                "user_id": ["u"] * 4 + ["v"] * 3 + ["w"] * 2,
                "item_id": ["a", "b", "c", "d", "e", "f", "a", "b", "c"],
                "position": [0, 1, 2, 3, 0, 1, 2, 0, 1],
            }
        )
    )
    return Dataset("tiny", items, inter)


def test_leave_one_out_by_hand():
    ds = tiny()
    test = leave_one_out(ds, "test")
    assert test.targets.sort("user_id").select("user_id", "item_id").rows() == [
        ("u", "d"),
        ("v", "a"),
        ("w", "c"),
    ]
    assert test.train.height == 9 - 3
    valid = leave_one_out(ds, "valid")
    # w has two events: its validation target would have no history, so it has no target.
    assert valid.targets.sort("user_id").select("user_id", "item_id").rows() == [("u", "c"), ("v", "f")]
    assert valid.train.sort("user_id", "seq").select("user_id", "item_id").rows() == [
        ("u", "a"),
        ("u", "b"),
        ("v", "e"),
    ]


def _no_leak(split) -> None:
    last_train = split.train.group_by("user_id").agg(pl.col("seq").max().alias("last"))
    joined = split.targets.join(last_train, on="user_id", how="inner")
    assert (joined["seq"] > joined["last"]).all(), "a training event comes after a target"
    same = split.train.join(split.targets, on=["user_id", "seq"], how="inner")
    assert same.height == 0, "a target event is in the training data"


@pytest.mark.parametrize("which", ["valid", "test"])
def test_leave_one_out_no_leak(synthetic, which):
    split = leave_one_out(synthetic, which)
    _no_leak(split)
    # The test split trains on the validation event; the validation split does not see the test event.
    if which == "valid":
        test = leave_one_out(synthetic, "test")
        assert test.targets.join(split.train, on=["user_id", "seq"]).height == 0
        assert (
            split.train.height
            == synthetic.interactions.height - 2 * synthetic.interactions["user_id"].n_unique()
        )


@pytest.mark.parametrize("which", ["valid", "test"])
def test_temporal_no_leak(synthetic, which):
    split = temporal_split(synthetic, which, test_fraction=0.1, valid_fraction=0.1)
    _no_leak(split)
    assert split.train["timestamp"].max() < split.targets["timestamp"].min()
    if which == "valid":
        test = temporal_split(synthetic, "test", test_fraction=0.1, valid_fraction=0.1)
        assert split.targets["timestamp"].max() < test.targets["timestamp"].min()
    # Targets are new to the user: no target repeats a training item of the same user.
    assert split.targets.join(split.train, on=["user_id", "item_id"]).height == 0


def test_train_data_sees_only_train(synthetic):
    split = leave_one_out(synthetic, "test")
    data = TrainData.from_split(synthetic, split)
    assert data.matrix.sum() <= split.train.height
    assert int(data.history_lengths().sum()) == split.train.height
    users, items = data.target_pairs(split)
    assert (items >= 0).all()
    for u, s in zip(users[:50], split.targets["seq"][:50], strict=False):
        assert len(data.history(u)) == s  # the history is exactly the events before the target


def test_split_errors(synthetic):
    with pytest.raises(ConfigError):
        make_split(synthetic, "train")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        make_split(synthetic, "test", "random")
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_split(tiny(), "test")
    assert make_split(tiny(), "test").protocol["kind"] == "leave-one-out"
    assert make_split(synthetic, "test").protocol["kind"] == "global-temporal"


def test_cold_start_split(synthetic):
    from recsys.data import cold_items, cold_start_split, without_items

    split = cold_start_split(synthetic, "test", item_fraction=0.2, seed=1)
    held = set(cold_items(synthetic, 0.2, seed=1).to_list())
    assert len(held) == round(0.2 * synthetic.items.height)
    assert not held & set(split.train["item_id"].to_list()), "a held-out item reached training"
    assert set(split.targets["item_id"].to_list()) <= held
    assert split.protocol["kind"].endswith("+cold-items")
    reduced = without_items(synthetic, cold_items(synthetic, 0.2, seed=1))
    assert not held & set(reduced.interactions["item_id"].to_list())
    # seq is renumbered: 0..n-1 within each user.
    check = reduced.interactions.group_by("user_id").agg(
        (pl.col("seq").max() + 1 == pl.len()).alias("ok"), (pl.col("seq").n_unique() == pl.len()).alias("u")
    )
    assert check["ok"].all() and check["u"].all()


def test_label_split_folds_move_back_one_event_each(synthetic):
    from recsys.data import label_split

    events = synthetic.interactions.sort("user_id", "seq")
    for fold in (0, 1, 2):
        _, split = label_split(synthetic, fold, "leave-one-out")
        n = events.group_by("user_id").len()
        expected = (
            events.join(n, on="user_id")
            .filter((pl.col("seq") == pl.col("len") - 2 - fold) & (pl.col("seq") >= 1))
            .select("user_id", "item_id")
            .sort("user_id")
        )
        assert split.targets.select("user_id", "item_id").sort("user_id").equals(expected)
        latest = split.train.group_by("user_id").agg(pl.col("seq").max().alias("last"))
        joined = latest.join(n, on="user_id")
        assert (joined["last"] < joined["len"] - 2 - fold).all()  # nothing from the label on


def test_label_split_refuses_extra_folds_on_temporal_data(synthetic):
    from recsys.data import label_split

    with pytest.raises(ConfigError, match="leave-one-out"):
        label_split(synthetic, 1, "temporal")
    assert label_split(synthetic, 0, "temporal")[1].protocol["kind"] == "global-temporal"


def test_all_interactions_has_every_event_and_no_targets(synthetic):
    from recsys.data import all_interactions

    split = all_interactions(synthetic)
    assert split.train.height == synthetic.interactions.height and split.targets.height == 0
