"""Readers for the user's own files: CSV (or TSV), Parquet and JSON lines, lazily through polars.

A column mapping renames the user's columns to canonical ones (``{"user_id": "customer"}``);
everything then goes through the validation in ``recsys.data.schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.schema import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    TimeUnit,
    UnknownItems,
    apply_mapping,
    validate_interactions,
    validate_items,
)
from recsys.errors import DataError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def scan_table(path: str | Path, *, fmt: str | None = None) -> pl.LazyFrame:
    """A lazy scan of a CSV/TSV, Parquet or JSON-lines file, chosen by ``fmt`` or the file's suffix."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    if path.is_dir():
        raise DataError("expected a file, found a directory", file=path)
    if path.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", file=path)
    kind = fmt or FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"unknown file type {path.suffix!r}; use one of {sorted(FORMATS)} or pass the format", file=path
        )
    try:
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            # Everything as text first: types are checked and cast by the validators, with row numbers.
            return pl.scan_csv(path, separator=sep, infer_schema=False, encoding="utf8")
        if kind == "parquet":
            return pl.scan_parquet(path)
        if kind == "jsonl":
            return pl.scan_ndjson(path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"could not open the file ({exc})", file=path) from None
    raise DataError(f"unknown format {kind!r}; use csv, parquet or jsonl", file=path)


def read_items(
    path: str | Path, *, columns: Mapping[str, str] | None = None, fmt: str | None = None
) -> pl.DataFrame:
    """Read and validate an items file; ``columns`` maps canonical names to the file's."""
    lf = apply_mapping(scan_table(path, fmt=fmt), columns, path, ITEM_COLUMNS)
    return validate_items(lf, path)


def read_interactions(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    fmt: str | None = None,
    items: pl.DataFrame | None = None,
    unknown_items: UnknownItems = "error",
    timestamp_unit: TimeUnit = "s",
) -> pl.DataFrame:
    """Read and validate an interactions file against an optional catalogue ``items``."""
    lf = apply_mapping(scan_table(path, fmt=fmt), columns, path, INTERACTION_COLUMNS)
    return validate_interactions(
        lf,
        path,
        item_ids=items["item_id"] if items is not None else None,
        unknown_items=unknown_items,
        timestamp_unit=timestamp_unit,
    )


def load_files(
    items_path: str | Path,
    interactions_path: str | Path,
    *,
    item_columns: Mapping[str, str] | None = None,
    interaction_columns: Mapping[str, str] | None = None,
    unknown_items: UnknownItems = "error",
    timestamp_unit: TimeUnit = "s",
    name: str | None = None,
) -> Dataset:
    """A ``Dataset`` from an items file and an interactions file."""
    items = read_items(items_path, columns=item_columns)
    interactions = read_interactions(
        interactions_path,
        columns=interaction_columns,
        items=items,
        unknown_items=unknown_items,
        timestamp_unit=timestamp_unit,
    )
    return Dataset(
        name=name or Path(interactions_path).stem,
        items=items,
        interactions=interactions,
        source={"items_path": str(items_path), "interactions_path": str(interactions_path)},
    )
