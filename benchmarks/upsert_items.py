"""How long adding items to a trained artifact takes: the whole upsert and each scorer's part.

    .venv/bin/python benchmarks/upsert_items.py --model-dir artifacts/scientific --items 1 --repeats 6

Each upsert adds ``--items`` new items (copies of catalogue items under new ids, with a new word in
their texts so no encoder has seen it) to the recommender as loaded, through
``recsys.live.upsert_items``, the path the service's new-items endpoint takes. The first upsert of
a process loads the text encoders' weights; the rest show the steady cost. Writes
benchmarks/results/upsert_items.json (``--output``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import polars as pl
from _machine import machine

from recsys.artifacts import load_recommender
from recsys.data.schema import TEXT_FIELDS
from recsys.evaluation.report import write_json
from recsys.live import upsert_items


def _timed(name: str, method: Callable[..., Any], spent: dict[str, list[float]]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = method(*args)
        spent.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    return call


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True, help="an artifact written by recsys train")
    ap.add_argument("--items", type=int, default=1, help="new items per upsert (default 1)")
    ap.add_argument("--repeats", type=int, default=6, help="upserts, each of new items (default 6)")
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "upsert_items.json")
    args = ap.parse_args()
    if args.items < 1 or args.repeats < 2:
        ap.error("--items must be at least 1 and --repeats at least 2")
    t0 = time.perf_counter()
    rec = load_recommender(args.model_dir)
    load_seconds = time.perf_counter() - t0
    spent: dict[str, list[float]] = {}
    for name, scorer in rec.scorers.items():
        scorer.with_items = _timed(name, scorer.with_items, spent)  # type: ignore[method-assign]
    frame = rec.data.item_frame
    text_columns = [c for c in TEXT_FIELDS if c in frame.columns]
    totals = []
    for r in range(args.repeats):
        rows = [(r * args.items + i) % len(frame) for i in range(args.items)]
        new = frame[rows].with_columns(
            pl.format("BENCH-{}-{}", pl.lit(r), pl.int_range(pl.len())).alias("item_id"),
            *[pl.format("{} edition{}", pl.col(c), pl.lit(r)).alias(c) for c in text_columns],
        )
        t0 = time.perf_counter()
        upsert_items(rec, new)
        totals.append(time.perf_counter() - t0)
        print(f"upsert {r}: {totals[-1]:.3f} s", flush=True)

    def summary(values: list[float]) -> dict[str, float]:
        return {"first": round(values[0], 4), "median_after": round(statistics.median(values[1:]), 4)}

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    result = {
        "command": "python benchmarks/upsert_items.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "code": commit.strip() or None,
        "artifact_load_seconds": round(load_seconds, 2),
        "items_per_upsert": args.items,
        "upsert_seconds": summary(totals),
        "scorer_seconds": {name: summary(v) for name, v in spent.items()},
    }
    for name, v in result["scorer_seconds"].items():
        print(f"  {name}: first {v['first']:.3f} s, then {v['median_after']:.3f} s")
    write_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
