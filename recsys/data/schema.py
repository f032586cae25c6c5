"""The canonical schema of items and interactions, and the checks that admit a frame to it.

Items: ``item_id`` (string, unique, non-null) plus optional text fields ``title``, ``category``,
``brand``, ``description`` and a free ``text`` that, when present, is the item's whole text;
optional ``listed_at``, when the item went on sale (a datetime or any number that grows with
time: only its order counts), stored as a float (datetimes as epoch seconds).

Interactions: ``user_id``, ``item_id`` (strings) and an order: a ``timestamp`` (datetime), a
``position`` within the user, or both; optional ``event`` (view, click, cart, purchase, ...) and
``weight``. Validation adds ``seq``: the 0-based order of the event within its user, ties on the
timestamp broken by position and then by row order, so every later step can sort without doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import polars as pl

from recsys.errors import DataError

ITEM_ID = "item_id"
USER_ID = "user_id"
TEXT_FIELDS = ("title", "category", "brand", "description", "text")
ITEM_COLUMNS = (ITEM_ID, *TEXT_FIELDS)
LISTED_AT = "listed_at"
INTERACTION_COLUMNS = (USER_ID, ITEM_ID, "timestamp", "position", "event", "weight")
UnknownItems = Literal["error", "drop"]
_SHOW = 5


def _source(source: str | Path | None) -> str:
    return str(source) if source is not None else "<frame>"


def collect(lf: pl.LazyFrame | pl.DataFrame, source: str | Path | None) -> pl.DataFrame:
    """Collect a lazy frame, turning whatever the engine raises on a bad file into a ``DataError``."""
    if isinstance(lf, pl.DataFrame):
        return lf
    try:
        return lf.collect()
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"could not read the file ({type(exc).__name__}: {first})", file=source) from None


def apply_mapping(
    lf: pl.LazyFrame, mapping: Mapping[str, str] | None, source: str | Path | None, allowed: tuple[str, ...]
) -> pl.LazyFrame:
    """Rename the user's columns to canonical names: ``mapping`` is ``{canonical: their_column}``."""
    if not mapping:
        return lf
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise DataError(
            f"column mapping names unknown canonical columns {unknown}; valid ones are {list(allowed)}",
            file=source,
        )
    present = set(lf.collect_schema().names())
    missing = {canon: theirs for canon, theirs in mapping.items() if theirs not in present}
    if missing:
        canon, theirs = next(iter(missing.items()))
        raise DataError(
            f"the column mapping asks for {theirs!r} (as {canon!r}) but the file has only {sorted(present)}",
            file=source,
            column=theirs,
        )
    return lf.rename({theirs: canon for canon, theirs in mapping.items() if theirs != canon})


def _require(df: pl.DataFrame, columns: tuple[str, ...], source: str | Path | None, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{what} need the column(s) {missing}; the file has {df.columns}. "
            "Pass a column mapping (e.g. --map user_id=customer) if they are named differently.",
            file=source,
            column=missing[0],
        )
    if df.height == 0:
        raise DataError(f"{what} file is empty (no rows)", file=source)


def _id_column(df: pl.DataFrame, column: str, source: str | Path | None) -> pl.DataFrame:
    dtype = df.schema[column]
    if not (dtype == pl.String or dtype.is_integer()):
        raise DataError(
            f"ids must be strings or integers, found {dtype}",
            file=source,
            column=column,
            rows=df.select(column).head(_SHOW).to_series().to_list(),
        )
    df = df.with_columns(pl.col(column).cast(pl.String).str.strip_chars())
    bad = df.with_row_index("row").filter(pl.col(column).is_null() | (pl.col(column) == ""))
    if bad.height:
        raise DataError(
            f"{bad.height} row(s) have a null or empty id",
            file=source,
            column=column,
            rows=bad.head(_SHOW).to_dicts(),
        )
    return df


def validate_items(frame: pl.LazyFrame | pl.DataFrame, source: str | Path | None = None) -> pl.DataFrame:
    """Admit an items frame to the canonical schema or raise a ``DataError`` saying why not."""
    df = collect(frame, source)
    _require(df, (ITEM_ID,), source, "items")
    df = _id_column(df, ITEM_ID, source)
    dup = df.filter(pl.col(ITEM_ID).is_duplicated())
    if dup.height:
        raise DataError(
            f"{dup[ITEM_ID].n_unique()} item id(s) appear more than once",
            file=source,
            column=ITEM_ID,
            rows=dup.head(_SHOW).to_dicts(),
        )
    text_cols = [c for c in TEXT_FIELDS if c in df.columns]
    if not text_cols:
        raise DataError(
            f"items need at least one text field of {list(TEXT_FIELDS)}; found {df.columns}", file=source
        )
    for col in text_cols:
        dtype = df.schema[col]
        if dtype.is_nested():
            raise DataError(f"text fields must be strings, found {dtype}", file=source, column=col)
    df = df.with_columns(pl.col(c).cast(pl.String).fill_null("") for c in text_cols)
    if LISTED_AT in df.columns:
        df = df.with_columns(_listed_at(df, source))
    return df.select(ITEM_ID, *text_cols, *[c for c in df.columns if c not in ITEM_COLUMNS])


def _listed_at(df: pl.DataFrame, source: str | Path | None) -> pl.Series:
    """``listed_at`` as float: numbers as they are, datetimes and dates as epoch seconds; text
    (a CSV's column) read as a number or else as a date."""
    col = df[LISTED_AT]
    if col.dtype == pl.String:
        as_number = col.cast(pl.Float64, strict=False)
        if as_number.null_count() == col.null_count():
            col = as_number
        else:
            try:
                col = col.str.strip_chars().str.to_datetime(strict=False, time_unit="us")
            except pl.exceptions.ComputeError:  # no date format fits any value
                col = pl.Series(LISTED_AT, [None] * len(col), dtype=pl.Datetime("us"))
            _refuse(
                df.filter(col.is_null() & df[LISTED_AT].is_not_null()), "neither a number nor a date", source
            )
    if col.dtype == pl.Null:
        return col.cast(pl.Float64)
    if col.dtype == pl.Date or isinstance(col.dtype, pl.Datetime):
        return col.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Float64).alias(LISTED_AT)
    if col.dtype.is_numeric():
        out = col.cast(pl.Float64)
        _refuse(df.filter(out.is_nan() | out.is_infinite()), "not a finite number", source)
        return out
    raise DataError(
        f"listed_at must be a datetime, a date or a number, found {col.dtype}", file=source, column=LISTED_AT
    )


def _refuse(bad: pl.DataFrame, what: str, source: str | Path | None) -> None:
    if bad.height:
        raise DataError(
            f"{bad.height} item(s) have a listed_at that is {what}",
            file=source,
            column=LISTED_AT,
            rows=bad.head(_SHOW).to_dicts(),
        )


TimeUnit = Literal["s", "ms", "us", "ns"]


def _timestamp(df: pl.DataFrame, source: str | Path | None, unit: TimeUnit) -> pl.DataFrame:
    dtype = df.schema["timestamp"]
    col = pl.col("timestamp")
    if dtype == pl.String:
        parsed = col.str.strip_chars().str.to_datetime(strict=False, time_unit="us")
        # Plain integers written as text (epoch times) are common in exported logs.
        as_int = col.str.strip_chars().cast(pl.Int64, strict=False)
        expr = pl.when(as_int.is_not_null()).then(pl.from_epoch(as_int, time_unit=unit)).otherwise(parsed)
    elif dtype.is_integer() or dtype.is_float():
        expr = pl.from_epoch(col.cast(pl.Int64), time_unit=unit)
    elif dtype == pl.Date or isinstance(dtype, pl.Datetime):
        expr = col.cast(pl.Datetime("us"))
    else:
        raise DataError(
            f"timestamps must be datetimes, dates, epoch numbers or ISO-8601 text, found {dtype}",
            file=source,
            column="timestamp",
        )
    out = df.with_columns(expr.dt.replace_time_zone(None).alias("_ts"))
    bad = out.with_row_index("row").filter(pl.col("_ts").is_null())
    if bad.height:
        raise DataError(
            f"{bad.height} timestamp(s) are null or cannot be parsed",
            file=source,
            column="timestamp",
            rows=bad.drop("_ts").head(_SHOW).to_dicts(),
        )
    return out.drop("timestamp").rename({"_ts": "timestamp"})


def validate_interactions(
    frame: pl.LazyFrame | pl.DataFrame,
    source: str | Path | None = None,
    *,
    item_ids: pl.Series | None = None,
    unknown_items: UnknownItems = "error",
    timestamp_unit: TimeUnit = "s",
) -> pl.DataFrame:
    """Admit an interactions frame to the canonical schema, adding the per-user order ``seq``.

    ``item_ids`` is the catalogue: interactions naming other items are counted and either refused
    (``unknown_items="error"``) or dropped with a warning (``"drop"``).
    """
    if unknown_items not in ("error", "drop"):
        raise DataError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    df = collect(frame, source)
    _require(df, (USER_ID, ITEM_ID), source, "interactions")
    if "timestamp" not in df.columns and "position" not in df.columns:
        raise DataError(
            "interactions need an order: a 'timestamp' column, a 'position' within the user, "
            f"or both; the file has {df.columns}",
            file=source,
        )
    df = _id_column(_id_column(df, USER_ID, source), ITEM_ID, source)
    if "timestamp" in df.columns:
        df = _timestamp(df, source, timestamp_unit)
    for col, kind in (("position", pl.Int64), ("weight", pl.Float64)):
        if col not in df.columns:
            continue
        cast = df.with_row_index("row").with_columns(pl.col(col).cast(kind, strict=False).alias("_v"))
        bad = cast.filter(pl.col("_v").is_null() | (pl.col("_v").is_nan() if kind == pl.Float64 else False))
        if bad.height:
            raise DataError(
                f"{bad.height} value(s) are null or not {'integers' if kind == pl.Int64 else 'numbers'}",
                file=source,
                column=col,
                rows=bad.drop("_v").head(_SHOW).to_dicts(),
            )
        df = df.with_columns(pl.col(col).cast(kind))
    if "event" in df.columns:
        df = df.with_columns(pl.col("event").cast(pl.String))
    if item_ids is not None:
        known = df[ITEM_ID].is_in(item_ids.implode())
        n_unknown = int((~known).sum())
        if n_unknown:
            bad = df.filter(~known)
            if unknown_items == "error":
                raise DataError(
                    f"{n_unknown} interaction(s) name {bad[ITEM_ID].n_unique()} item id(s) missing from the "
                    "items file; fix the files or pass unknown_items='drop' (--unknown-items drop)",
                    file=source,
                    column=ITEM_ID,
                    rows=bad.head(_SHOW).to_dicts(),
                )
            import warnings

            warnings.warn(
                f"{source}: dropped {n_unknown} interaction(s) naming items missing from the catalogue",
                stacklevel=2,
            )
            df = df.filter(known)
            if df.height == 0:
                raise DataError("no interactions are left after dropping unknown items", file=source)
    order = [c for c in ("timestamp", "position") if c in df.columns]
    df = (
        df.with_row_index("_row")
        .sort([USER_ID, *order, "_row"])
        .with_columns(pl.int_range(pl.len()).over(USER_ID).alias("seq"))
        .drop("_row")
    )
    keep = [c for c in INTERACTION_COLUMNS if c in df.columns]
    return df.select(*keep, "seq")
