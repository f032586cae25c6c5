"""The Amazon 2018 "Industrial & Scientific" folder in the UniSRec/Recformer format.

The folder holds item texts keyed by ASIN, index files for items and users, and ``.inter`` files
of (history, next item) rows. Histories there are cut at 50 items, so each user's full sequence is
rebuilt from the training prefixes (every prefix and the item that followed it) plus the validation
and test targets, and then checked against the validation and test files. Files are verified
against ``SHA256SUMS`` before anything is read.

The files carry no dates. Amazon allocates ASINs in sequence (``B000...`` before ``B00A...``
before ``B01...``, digits before letters), so an item's ASIN among the catalogue's, in that
order, is when it went on sale: the loader adds it as ``listed_at`` (0 the oldest ASIN; null for
an ID that is not a ``B``-prefixed 10-character ASIN, such as a book's ISBN).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.schema import collect, validate_interactions, validate_items
from recsys.errors import DataError

PREFIX = "Scientific"
FILES = ("text", "item2index", "user2index", "train.inter", "valid.inter", "test.inter")
HISTORY_CAP = 50  # the .inter files keep at most this many history items


def verify_checksums(folder: Path) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS``; a missing or altered file is a ``DataError``."""
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise DataError("SHA256SUMS is missing: cannot verify the dataset", file=sums)
    expected: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition("  ")
            expected[name.strip().lstrip("*")] = digest
    for name, digest in expected.items():
        path = folder / name
        if not path.exists():
            raise DataError("listed in SHA256SUMS but missing", file=path)
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise DataError(
                f"checksum mismatch (expected {digest[:12]}…, got {h.hexdigest()[:12]}…): "
                "the file is corrupt or not the published version",
                file=path,
            )
    return expected


def _read_tsv(path: Path, names: list[str], header: bool) -> pl.DataFrame:
    if not path.exists():
        raise DataError("file missing from the dataset folder", file=path)
    lf = pl.scan_csv(
        path, separator="\t", has_header=header, new_columns=names, quote_char=None, infer_schema=False
    )
    return collect(lf, path)


def _split_text(text: pl.Expr) -> list[pl.Expr]:
    """Recover title, category path and brand from "title. category path. brand." where possible."""
    parts = text.str.strip_chars().str.strip_chars_end(".").str.split(". ")
    n = parts.list.len()
    brand = pl.when(n >= 3).then(parts.list.get(-1, null_on_oob=True)).otherwise(pl.lit(""))
    category = pl.when(n >= 3).then(parts.list.get(-2, null_on_oob=True)).otherwise(pl.lit(""))
    title = pl.when(n >= 3).then(parts.list.head(n - 2).list.join(". ")).otherwise(text.str.strip_chars())
    return [title.alias("title"), category.alias("category"), brand.alias("brand")]


def load_amazon_scientific(folder: str | Path, *, verify: bool = True) -> Dataset:
    """Load the folder into canonical items (ASIN, text, title, category, brand) and interactions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("dataset folder not found", file=folder)
    checksums = verify_checksums(folder) if verify else {}
    text = _read_tsv(folder / f"{PREFIX}.text", ["item_id", "text"], header=True)
    item_index = _read_tsv(folder / f"{PREFIX}.item2index", ["item_id", "index"], header=False)
    user_index = _read_tsv(folder / f"{PREFIX}.user2index", ["user_id", "index"], header=False)
    items = (
        item_index.with_columns(pl.col("index").cast(pl.Int64))
        .join(text, on="item_id", how="left")
        .sort("index")
    )
    if items["text"].null_count():
        missing = items.filter(pl.col("text").is_null())
        raise DataError(
            f"{missing.height} indexed item(s) have no text",
            file=folder / f"{PREFIX}.text",
            column="item_id",
            rows=missing.head(5).to_dicts(),
        )
    items = validate_items(
        items.select("item_id", "text", *_split_text(pl.col("text")), asin_order(pl.col("item_id"))),
        folder / f"{PREFIX}.item2index",
    )
    inter = {
        part: _read_tsv(folder / f"{PREFIX}.{part}.inter", ["user", "history", "target"], header=True)
        for part in ("train", "valid", "test")
    }
    sequences = _rebuild_sequences(inter, folder)
    users = user_index.with_columns(pl.col("index").cast(pl.Int64))
    item_ids = items["item_id"]
    interactions = (
        sequences.join(users, left_on="user", right_on="index", how="left")
        .join(
            items.select("item_id").with_row_index("item").with_columns(pl.col("item").cast(pl.Int64)),
            on="item",
            how="left",
        )
        .select("user_id", "item_id", "position")
    )
    if interactions["user_id"].null_count():
        raise DataError(
            "interactions name user indices missing from user2index", file=folder / f"{PREFIX}.user2index"
        )
    interactions = validate_interactions(interactions, folder, item_ids=item_ids)
    return Dataset(
        name="amazon-scientific",
        items=items,
        interactions=interactions,
        source={"folder": str(folder), "checksums_verified": bool(checksums)},
    )


def asin_order(asin: pl.Expr) -> pl.Expr:
    """``listed_at``: the ASIN's place among the catalogue's ASINs in allocation order (0 oldest),
    null for IDs that are not ASINs. ASCII order is allocation order: digits sort before letters."""
    is_asin = asin.str.contains(r"^B[0-9A-Z]{9}$")
    return (
        pl.when(is_asin).then(asin).otherwise(None).rank("dense").sub(1).cast(pl.Float64).alias("listed_at")
    )


def _rebuild_sequences(inter: dict[str, pl.DataFrame], folder: Path) -> pl.DataFrame:
    """Each user's full item sequence (user, position, item) from the prefix rows, verified."""
    train = (
        inter["train"]
        .with_columns(
            pl.col("user").cast(pl.Int64),
            pl.col("target").cast(pl.Int64),
            pl.col("history").str.split(" ").cast(pl.List(pl.Int64)),
        )
        .with_row_index("row")
    )
    # The shortest prefix starts the sequence; the targets of all prefixes, in the order the prefixes
    # grow (file order reversed), continue it. Lengths plateau at the cap, so order by row, not length.
    first = (
        train.sort("row", descending=True)
        .group_by("user", maintain_order=True)
        .first()
        .select("user", pl.col("history").alias("items"))
    )
    followers = (
        train.sort("row", descending=True)
        .group_by("user", maintain_order=True)
        .agg(pl.col("target").alias("next"))
    )
    held = {
        part: inter[part].select(
            pl.col("user").cast(pl.Int64),
            pl.col("target").cast(pl.Int64).alias(part),
            pl.col("history").str.split(" ").cast(pl.List(pl.Int64)).alias(f"{part}_h"),
        )
        for part in ("valid", "test")
    }
    seqs = (
        first.join(followers, on="user")
        .join(held["valid"], on="user")
        .join(held["test"], on="user")
        .with_columns(seq=pl.concat_list("items", "next", pl.col("valid"), pl.col("test")))
    )
    if seqs.height != held["test"].height:
        raise DataError(
            f"{held['test'].height - seqs.height} test user(s) have no training prefixes",
            file=folder / f"{PREFIX}.train.inter",
        )
    # Check: the validation and test rows must be the sequence's last two steps (histories cut at 50).
    check = seqs.with_columns(
        ok_test=pl.col("seq").list.head(pl.col("seq").list.len() - 1).list.tail(HISTORY_CAP)
        == pl.col("test_h"),
        ok_valid=pl.col("seq").list.head(pl.col("seq").list.len() - 2).list.tail(HISTORY_CAP)
        == pl.col("valid_h"),
    )
    bad = check.filter(~pl.col("ok_test") | ~pl.col("ok_valid"))
    if bad.height:
        raise DataError(
            f"{bad.height} user(s)' validation/test rows do not continue their training prefixes",
            file=folder / f"{PREFIX}.test.inter",
            rows=bad.select("user").to_series().to_list(),
        )
    return (
        seqs.select("user", pl.col("seq").alias("item"))
        .explode("item")
        .with_columns(position=pl.int_range(pl.len()).over("user"))
    )
