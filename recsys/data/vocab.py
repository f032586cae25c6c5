"""Id vocabularies: external ids become row numbers at the boundary, and never reach matrix code."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl


class IdVocab:
    """An ordered set of external ids; ``index`` maps ids to rows, ``-1`` for an unknown id."""

    def __init__(self, ids: Iterable[str] | pl.Series) -> None:
        series = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
        series = series.cast(pl.String).rename("id")
        if series.is_duplicated().any():
            raise ValueError("vocabulary ids must be unique")
        self._ids = series
        self._lookup = pl.DataFrame({"id": series, "index": pl.int_range(series.len(), eager=True)})
        self._dict: dict[str, int] | None = None  # for a few ids at a time (serving), built when first needed

    def __len__(self) -> int:
        return self._ids.len()

    def __contains__(self, item_id: object) -> bool:
        return bool(self._ids.is_in([item_id]).any()) if isinstance(item_id, str) else False

    @property
    def ids(self) -> pl.Series:
        return self._ids

    def index(self, ids: Iterable[str] | pl.Series) -> np.ndarray:
        """Row numbers (int64) for ``ids``, in their order; ``-1`` where an id is unknown."""
        if isinstance(ids, (list, tuple)) and len(ids) <= 64:
            if self._dict is None:
                self._dict = dict(zip(self._ids.to_list(), range(len(self._ids)), strict=True))
            rows = [self._dict.get(i, -1) if isinstance(i, str) else -1 for i in ids]
            return np.array(rows, dtype=np.int64)
        query = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.String)
        frame = pl.DataFrame({"id": query.cast(pl.String)})
        joined = frame.join(self._lookup, on="id", how="left", maintain_order="left")
        return joined["index"].fill_null(-1).to_numpy().astype(np.int64)

    def lookup(self, index: np.ndarray | Iterable[int]) -> list[str]:
        """External ids for row numbers."""
        return self._ids.gather(np.asarray(index, dtype=np.int64)).to_list()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdVocab) and self._ids.equals(other._ids)

    __hash__ = None  # type: ignore[assignment]
