"""The Amazon Scientific folder: checksums, sequence rebuild, and the papers' split."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from recsys.data import leave_one_out, load_amazon_scientific
from recsys.data.amazon import asin_order
from recsys.errors import DataError
from tests.conftest import SCIENTIFIC

pytestmark = pytest.mark.realdata


def test_counts(scientific):
    s = scientific.summary()
    assert (s["items"], s["users"]) == (4385, 8442)
    # 59,384 in the folder's README counts histories cut at 50; three users' full sequences are longer.
    assert s["interactions"] == 59427
    assert scientific.items.filter(pl.col("text") == "").height == 0


def _file_rows(name: str) -> pl.DataFrame:
    return pl.read_csv(
        SCIENTIFIC / name,
        separator="\t",
        quote_char=None,
        new_columns=["user", "history", "target"],
        schema_overrides={"user": pl.Int64},
    )


@pytest.mark.parametrize(
    ("which", "file"), [("test", "Scientific.test.inter"), ("valid", "Scientific.valid.inter")]
)
def test_leave_one_out_matches_published_files(scientific, which, file):
    split = leave_one_out(scientific, which)
    users = pl.read_csv(
        SCIENTIFIC / "Scientific.user2index",
        separator="\t",
        has_header=False,
        new_columns=["user_id", "user"],
    )
    items = pl.read_csv(
        SCIENTIFIC / "Scientific.item2index", separator="\t", has_header=False, new_columns=["item_id", "idx"]
    )
    expected = (
        _file_rows(file)
        .join(users, on="user")
        .join(items, left_on="target", right_on="idx")
        .select("user_id", "item_id")
        .sort("user_id")
    )
    assert split.targets.select("user_id", "item_id").sort("user_id").equals(expected)


def test_checksum_mismatch_is_refused(tmp_path):
    if not SCIENTIFIC.is_dir():
        pytest.skip("reference data absent")
    copy = tmp_path / "sci"
    shutil.copytree(SCIENTIFIC, copy)
    for f in copy.iterdir():
        f.chmod(0o644)
    with (copy / "Scientific.valid.inter").open("a") as fh:
        fh.write("0\t1 2\t3\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_amazon_scientific(copy)
    (copy / "Scientific.text").unlink()
    with pytest.raises(DataError, match="missing"):
        load_amazon_scientific(copy)


def test_asin_order_is_allocation_order_and_skips_other_ids():
    ids = pl.DataFrame({"item_id": ["B00A000000", "B000000001", "0123456789", "B010000000", "B00A000000x"]})
    assert ids.select(asin_order(pl.col("item_id")))["listed_at"].to_list() == [1.0, 0.0, None, 2.0, None]


def test_every_item_has_its_asin_place(scientific):
    listed = scientific.items["listed_at"]
    assert listed.null_count() == 0 and listed.n_unique() == scientific.items.height
