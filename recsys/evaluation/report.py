"""Results as a terminal table and as JSON: ``{"protocol": ..., "results": {model: metrics}}``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from recsys.atomic import write_text

TABLE_METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "coverage@10")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(
    rows: dict[str, dict[str, float]], metrics: tuple[str, ...] = TABLE_METRICS, first: str = "model"
) -> str:
    """A fixed-width table, one row per model (or slice)."""
    cols = [c for c in metrics if any(c in r for r in rows.values())]
    header = [first, *cols]
    body = [[name, *(_fmt(r.get(c, float("nan"))) for c in cols)] for name, r in rows.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None  # JSON has no NaN; null means "undefined" here
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n")
