"""Business rules after ranking: seen items, category and item filters, a diversity cap.

Rules never reorder: they drop items from the ranked list and keep the best ``k`` of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.data.train_data import TrainData
from recsys.errors import ConfigError
from recsys.rank.features import ItemSide


@dataclass(frozen=True)
class Filters:
    exclude_seen: bool = True  # drop the user's own history
    include_categories: tuple[str, ...] | None = None  # only these categories (exact category strings)
    exclude_categories: tuple[str, ...] = ()
    include_items: tuple[str, ...] | None = None  # only these item ids
    exclude_items: tuple[str, ...] = ()
    max_per_category: int | None = None  # at most this many items of one category per list

    def __post_init__(self) -> None:
        if self.max_per_category is not None and self.max_per_category < 1:
            raise ConfigError(f"max_per_category must be at least 1, not {self.max_per_category}")
        for name in ("include_categories", "exclude_categories", "include_items", "exclude_items"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"{name} must be a list of strings, not the string {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))


def _item_mask(ids: tuple[str, ...], data: TrainData) -> np.ndarray:
    mask = np.zeros(data.n_items, dtype=bool)
    rows = data.items.index(list(ids))
    mask[rows[rows >= 0]] = True
    return mask


def allowed_items(filters: Filters, side: ItemSide, data: TrainData) -> np.ndarray:
    """(n_items,) True where an item passes the item and category filters."""
    ok = np.ones(data.n_items, dtype=bool) if side.available is None else side.available.copy()
    if filters.include_items is not None:
        ok &= _item_mask(filters.include_items, data)
    if filters.exclude_items:
        ok &= ~_item_mask(filters.exclude_items, data)
    if filters.include_categories is not None:
        ok &= np.isin(side.category_names, list(filters.include_categories))
    if filters.exclude_categories:
        ok &= ~np.isin(side.category_names, list(filters.exclude_categories))
    return ok


def apply_rules(
    scored: pl.DataFrame,
    side: ItemSide,
    data: TrainData,
    histories: list[np.ndarray],
    filters: Filters,
    k: int,
) -> pl.DataFrame:
    """The best ``k`` rows per ``row`` of ``scored`` (columns row, item, score, …) that pass ``filters``,
    ordered by row, then score (ties: lower item row first)."""
    ok = allowed_items(filters, side, data)
    rows, items = scored["row"].to_numpy(), scored["item"].to_numpy()
    keep = ok[items]
    if filters.exclude_seen and len(histories):
        lengths = np.array([len(h) for h in histories])
        seen_rows = np.repeat(np.arange(len(histories)), lengths)
        seen_items = np.concatenate(histories) if lengths.sum() else np.zeros(0, np.int64)
        n = max(data.n_items, int(items.max(initial=0)) + 1)
        keep &= ~np.isin(rows.astype(np.int64) * n + items, seen_rows * n + seen_items)
    idx = np.flatnonzero(keep)
    # Best first within each row; ties: lower item row first.
    idx = idx[np.lexsort((items[idx], -scored["score"].to_numpy()[idx], rows[idx]))]
    if filters.max_per_category is not None:
        cats = side.category[items[idx]]
        nth = _position_in_group(
            rows[idx].astype(np.int64) * (int(side.category.max(initial=0)) + 2) + cats + 1
        )
        idx = idx[(cats < 0) | (nth < filters.max_per_category)]
    idx = idx[_position_in_group(rows[idx]) < k]
    return scored[idx]


def _position_in_group(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, … within each group of equal ``keys``, in the order given (groups may interleave)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = np.arange(len(keys)) - first
    return out
