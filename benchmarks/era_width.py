"""How wide a user's era should be for `popularity_era`: the target's recall among the best items
by each count alone, on one split of Amazon Scientific.

    .venv/bin/python benchmarks/era_width.py --data-dir ../shared/data/amazon-scientific --split valid

Each user's time is the newest listing place (`ItemSide.listed`: the ASIN's allocation order, 0
the oldest item, 1 the newest) among their history items; a candidate's count is its training
events whose own time lies within the width of the user's (`ItemSide.era_counts`). Rows: plain
popularity, popularity among users' last three items, and the era count at each width (ties
broken by popularity). Items of the history are excluded, as in the protocol. Writes JSON with
the machine and the command to `--output`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _machine import machine

from recsys.atomic import write_text
from recsys.data import TrainData, leave_one_out, load_amazon_scientific
from recsys.rank.features import ItemSide, _newest


def recall_at(
    score_rows, histories: list[np.ndarray], targets: np.ndarray, k: int, block: int = 1000
) -> float:
    """Share of users whose target ranks among the ``k`` best of ``score_rows(start, stop)``."""
    hits = 0
    for start in range(0, len(targets), block):
        stop = min(start + block, len(targets))
        scores = score_rows(start, stop)
        for r in range(start, stop):
            scores[r - start, histories[r]] = -np.inf
        own = scores[np.arange(stop - start), targets[start:stop]]
        hits += int(((scores > own[:, None]).sum(axis=1) < k).sum())
    return hits / len(targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="the Amazon Scientific folder")
    parser.add_argument(
        "--split", choices=("valid", "test"), default="valid", help="which targets (default valid)"
    )
    parser.add_argument("--widths", default="0.05,0.1,0.2,0.3,0.5", help="comma-separated era widths")
    parser.add_argument("--k", type=int, default=50, help="recall at this depth (default 50)")
    parser.add_argument("--output", default="benchmarks/results/era_width.json")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    ds = load_amazon_scientific(args.data_dir)
    split = leave_one_out(ds, args.split)
    data = TrainData.from_split(ds, split)
    users, targets = data.target_pairs(split)
    side = ItemSide.build(data, np.zeros((data.n_items, 1), np.float32))
    histories = [data.history(int(u)) for u in users]
    lengths = np.array([len(h) for h in histories])
    newest = _newest(side.listed, np.concatenate(histories), lengths)
    n = data.n_items
    pop = side.popularity.astype(np.float64)

    def constant(values: np.ndarray):
        return lambda start, stop: np.tile(values, (stop - start, 1))

    def era(width: float):
        def rows(start: int, stop: int) -> np.ndarray:
            items = np.tile(np.arange(n), stop - start)
            when = np.repeat(newest[start:stop], n)
            counts = side.era_counts(items, when, width).reshape(stop - start, n).astype(np.float64)
            return np.nan_to_num(counts, nan=0.0) + 1e-3 * pop / max(pop.max(), 1.0)

        return rows

    rows = [
        {"count": "popularity", "recall": recall_at(constant(pop), histories, targets, args.k)},
        {
            "count": "popularity among users' last three items",
            "recall": recall_at(
                constant(side.popularity_recent + 1e-3 * pop / pop.max()), histories, targets, args.k
            ),
        },
    ]
    for width in (float(w) for w in args.widths.split(",")):
        rows.append(
            {
                "count": f"era, width {width}",
                "width": width,
                "recall": recall_at(era(width), histories, targets, args.k),
            }
        )
    for row in rows:
        print(f"{row['count']:45s} Recall@{args.k} {row['recall']:.4f}")
    result = {
        "command": " ".join(
            [".venv/bin/python", "benchmarks/era_width.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
        "split": args.split,
        "k": args.k,
        "users": len(targets),
        "undated_users": int(np.isnan(newest).sum()),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.output, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
