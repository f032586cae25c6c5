"""Generic readers: formats, column mappings, and a DataError for every kind of bad file."""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys.data import load_files, read_interactions, read_items
from recsys.errors import DataError

ITEMS = pl.DataFrame(
    {"sku": ["a", "b", "c"], "name": ["Drill", "Saw", "Glue"], "cat": ["tools", "tools", "glue"]}
)
EVENTS = pl.DataFrame(
    {
        "customer": ["u1", "u1", "u2", "u2"],
        "sku": ["a", "b", "c", "a"],
        "ts": ["2026-01-01T10:00:00", "2026-01-02T10:00:00", "2026-01-01T09:00:00", "2026-01-01T08:00:00"],
    }
)
ITEM_MAP = {"item_id": "sku", "title": "name", "category": "cat"}
EVENT_MAP = {"user_id": "customer", "item_id": "sku", "timestamp": "ts"}


def write(df: pl.DataFrame, path):
    if path.suffix == ".parquet":
        df.write_parquet(path)
    elif path.suffix == ".jsonl":
        df.write_ndjson(path)
    else:
        df.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_formats_with_column_mapping(tmp_path, suffix):
    items = write(ITEMS, tmp_path / f"items{suffix}")
    events = write(EVENTS, tmp_path / f"events{suffix}")
    ds = load_files(items, events, item_columns=ITEM_MAP, interaction_columns=EVENT_MAP)
    assert ds.items.columns[:3] == ["item_id", "title", "category"]
    assert ds.items["item_id"].to_list() == ["a", "b", "c"]
    inter = ds.interactions
    assert set(inter.columns) >= {"user_id", "item_id", "timestamp", "seq"}
    # u2's events are ordered by time, not by file order.
    u2 = inter.filter(pl.col("user_id") == "u2").sort("seq")["item_id"].to_list()
    assert u2 == ["a", "c"]
    assert inter.schema["timestamp"] == pl.Datetime("us")


def test_integer_ids_and_epoch_timestamps(tmp_path):
    items = write(pl.DataFrame({"item_id": [10, 20], "title": ["x", "y"]}), tmp_path / "i.parquet")
    events = write(
        pl.DataFrame({"user_id": [1, 1], "item_id": [20, 10], "timestamp": [1_700_000_100, 1_700_000_000]}),
        tmp_path / "e.parquet",
    )
    ds = load_files(items, events)
    assert ds.interactions.sort("seq")["item_id"].to_list() == ["10", "20"]


def test_position_orders_when_no_timestamp(tmp_path):
    items = write(ITEMS.rename({"sku": "item_id", "name": "title"}), tmp_path / "i.csv")
    events = write(
        pl.DataFrame({"user_id": ["u", "u"], "item_id": ["b", "a"], "position": [2, 1]}), tmp_path / "e.csv"
    )
    ds = load_files(items, events)
    assert ds.interactions.sort("seq")["item_id"].to_list() == ["a", "b"]
    assert not ds.has_timestamps


def _items(tmp_path):
    return write(ITEMS.rename({"sku": "item_id", "name": "title", "cat": "category"}), tmp_path / "items.csv")


def expect_error(match, fn, *args, **kwargs) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    return info.value


def test_missing_column_names_file_and_column(tmp_path):
    path = write(pl.DataFrame({"user": ["u"], "item_id": ["a"], "position": [0]}), tmp_path / "e.csv")
    err = expect_error("need the column", read_interactions, path)
    assert err.file == str(path) and err.column == "user_id"
    assert "column mapping" in str(err)


def test_mapping_to_absent_column(tmp_path):
    path = write(EVENTS, tmp_path / "e.csv")
    err = expect_error("asks for 'client'", read_interactions, path, columns={"user_id": "client"})
    assert err.column == "client"


def test_mapping_unknown_canonical_name(tmp_path):
    path = write(EVENTS, tmp_path / "e.csv")
    expect_error("unknown canonical", read_interactions, path, columns={"customer_id": "customer"})


def test_null_ids_show_rows(tmp_path):
    path = write(
        pl.DataFrame({"item_id": ["a", None, "c"], "title": ["x", "y", "z"]}), tmp_path / "i.parquet"
    )
    err = expect_error("null or empty id", read_items, path)
    assert err.column == "item_id" and err.rows and err.rows[0]["row"] == 1


def test_duplicate_item_ids(tmp_path):
    path = write(pl.DataFrame({"item_id": ["a", "b", "a"], "title": ["x", "y", "z"]}), tmp_path / "i.csv")
    err = expect_error("more than once", read_items, path)
    assert err.column == "item_id" and len(err.rows) == 2


def test_items_need_text(tmp_path):
    path = write(pl.DataFrame({"item_id": ["a"], "price": [3]}), tmp_path / "i.parquet")
    expect_error("text field", read_items, path)


def test_unknown_items_error_or_drop(tmp_path):
    items = read_items(_items(tmp_path))
    path = write(
        pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "zz", "yy"], "position": [0, 1, 2]}),
        tmp_path / "e.csv",
    )
    err = expect_error("2 interaction", read_interactions, path, items=items)
    assert "unknown_items='drop'" in str(err)
    with pytest.warns(UserWarning, match="dropped 2"):
        kept = read_interactions(path, items=items, unknown_items="drop")
    assert kept["item_id"].to_list() == ["a"]


def test_all_unknown_items_dropped_is_an_error(tmp_path):
    items = read_items(_items(tmp_path))
    path = write(pl.DataFrame({"user_id": ["u"], "item_id": ["zz"], "position": [0]}), tmp_path / "e.csv")
    with pytest.warns(UserWarning):
        expect_error("no interactions are left", read_interactions, path, items=items, unknown_items="drop")


def test_unparseable_timestamps(tmp_path):
    path = write(
        pl.DataFrame(
            {"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": ["2026-01-01", "yesterday"]}
        ),
        tmp_path / "e.csv",
    )
    err = expect_error("cannot be parsed", read_interactions, path)
    assert err.column == "timestamp" and err.rows[0]["timestamp"] == "yesterday"


def test_wrong_types(tmp_path):
    path = write(
        pl.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "position": ["1", "two"]}),
        tmp_path / "e.csv",
    )
    err = expect_error("not integers", read_interactions, path)
    assert err.column == "position"
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"user_id": {"nested": 1}, "item_id": "a", "position": 0}) + "\n")
    expect_error("ids must be strings or integers", read_interactions, path)


def test_empty_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    expect_error("empty", read_interactions, empty)
    header_only = tmp_path / "h.csv"
    header_only.write_text("user_id,item_id,position\n")
    expect_error("empty", read_interactions, header_only)


def test_bad_encoding(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes("item_id,title\na,caf\xe9\n".encode("latin-1"))
    err = expect_error("could not read", read_items, path)
    assert err.file == str(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    expect_error("could not", read_interactions, path)


def test_missing_file_and_unknown_suffix(tmp_path):
    expect_error("not found", read_items, tmp_path / "nope.csv")
    odd = tmp_path / "items.xlsx"
    odd.write_text("x")
    expect_error("unknown file type", read_items, odd)


def test_no_order_column(tmp_path):
    path = write(pl.DataFrame({"user_id": ["u"], "item_id": ["a"]}), tmp_path / "e.csv")
    expect_error("need an order", read_interactions, path)


def test_listed_at_is_kept_as_seconds_or_refused(tmp_path):
    dated = pl.DataFrame(
        {"item_id": ["a", "b"], "title": ["x", "y"], "listed_at": ["2020-01-01", "2021-01-01"]}
    )
    for path in (
        write(dated, tmp_path / "i.csv"),
        write(dated.with_columns(pl.col("listed_at").str.to_date()), tmp_path / "i.parquet"),
    ):
        items = read_items(path)
        assert items.schema["listed_at"] == pl.Float64
        assert items["listed_at"].to_list() == [1_577_836_800.0, 1_609_459_200.0]
    numbered = read_items(
        write(pl.DataFrame({"item_id": ["a"], "title": ["x"], "listed_at": [7]}), tmp_path / "n.csv")
    )
    assert numbered["listed_at"].to_list() == [7.0]
    with pytest.raises(DataError, match="neither a number nor a date") as err:
        read_items(write(dated.with_columns(listed_at=pl.lit("soon")), tmp_path / "s.csv"))
    assert err.value.column == "listed_at"
    with pytest.raises(DataError, match="listed_at must be a datetime"):
        read_items(write(dated.with_columns(listed_at=pl.lit([1, 2])), tmp_path / "l.parquet"))
