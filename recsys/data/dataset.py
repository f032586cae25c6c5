"""A validated dataset: the catalogue, the interaction log, where they came from, and a fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl

from recsys.data.schema import TEXT_FIELDS


def frame_fingerprint(*frames: pl.DataFrame) -> str:
    """A content hash of frames (column names, types and values), stable across runs and machines."""
    h = hashlib.sha256()
    for df in frames:
        h.update(repr(list(df.schema.items())).encode())
        h.update(df.write_csv().encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    """Canonical items and interactions (see ``recsys.data.schema``), already validated."""

    name: str
    items: pl.DataFrame
    interactions: pl.DataFrame
    source: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def fingerprint(self) -> str:
        return frame_fingerprint(self.items, self.interactions)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items": self.items.height,
            "users": self.interactions["user_id"].n_unique(),
            "interactions": self.interactions.height,
            "fingerprint": self.fingerprint,
            **self.source,
        }


def item_text_expr(fields: tuple[str, ...] = ("title", "category", "brand", "description")) -> pl.Expr:
    """The item's text: the ``text`` column when it has one, else its fields joined as sentences."""
    parts = [pl.col(f).fill_null("").str.strip_chars().str.strip_chars_end(".") for f in fields]
    joined = pl.concat_str(
        [pl.when(p != "").then(p + pl.lit(". ")).otherwise(pl.lit("")) for p in parts]
    ).str.strip_chars()
    return joined.alias("item_text")


def item_texts(items: pl.DataFrame) -> list[str]:
    """One text per catalogue row, in catalogue order, for the text encoder."""
    if "text" in items.columns:
        fallback_fields = tuple(f for f in TEXT_FIELDS if f in items.columns and f != "text")
        fallback = item_text_expr(fallback_fields) if fallback_fields else pl.lit("")
        expr = (
            pl.when(pl.col("text").fill_null("").str.strip_chars() != "")
            .then(pl.col("text"))
            .otherwise(fallback)
        )
        return items.select(expr.str.strip_chars().alias("t"))["t"].to_list()
    fields = tuple(f for f in TEXT_FIELDS if f in items.columns)
    return items.select(item_text_expr(fields))["item_text"].to_list()
