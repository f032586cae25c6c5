"""How much the protocol's tie-break moves each scorer's figures on Amazon Scientific.

    .venv/bin/python benchmarks/tie_breaking.py --data-dir ../shared/data/amazon-scientific

The evaluator ranks equal scores by catalogue row, lower first (`recsys.evaluation.metrics.
target_ranks`; the protocol's `tie_breaking`). On this dataset the catalogue rows are the order of
`Scientific.item2index`, which numbers items as they first appear while the users are read in
order, each user's test target included: user 0's history is items 0-12 and their target item 13.
A scorer whose scores tie often (counts) could gain or lose from that order. Here each scorer's
targets are ranked both ways on one split, by catalogue row and by a random order among
the tied items (exactly: the expectation over every order of the ties, each equally likely), and
Recall@10 / NDCG@10 / Recall@50 are given for both, with the share of the targets in the top 10
that tie with another item. Writes JSON with the machine and the command to `--output`.
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
from recsys.evaluation.metrics import ranking_metrics, target_ranks
from recsys.scorers import build_scorer

# Name → (registry model, options): the count-based scorers, whose scores tie, and two that do not.
SCORERS = {
    "popularity": ("popularity", {}),
    "covisit": ("covisit", {}),
    "cooc": ("covisit", {"cooccurrence_weight": 1.0, "window": 1}),
    "als": ("als", {}),
    "seqlinear": ("seqlinear", {}),
}
KS = (10, 50)


def tied_ranks(scores: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each target's items scored higher and the other items with its score."""
    block = scores[rows]
    own = block[np.arange(len(rows)), targets][:, None]
    return (block > own).sum(axis=1), (block == own).sum(axis=1) - 1


def expected_metrics(higher: np.ndarray, ties: np.ndarray) -> dict[str, float]:
    """Recall@10, NDCG@10, Recall@50 in expectation when the target's place among its ties is
    uniform: rank higher + j, j = 0 .. ties, each with probability 1 / (ties + 1)."""
    sums = {"recall@10": 0.0, "ndcg@10": 0.0, "recall@50": 0.0}
    weight = 1.0 / (ties + 1)
    for j in range(max(KS)):
        rank = higher + j
        w = np.where(j <= ties, weight, 0.0)
        sums["recall@10"] += float((w * (rank < 10)).sum())
        sums["ndcg@10"] += float((w * (rank < 10) / np.log2(rank + 2)).sum())
        sums["recall@50"] += float((w * (rank < 50)).sum())
    return {m: v / len(higher) for m, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="the Amazon Scientific folder")
    parser.add_argument(
        "--split", choices=("valid", "test"), default="test", help="which targets (default test)"
    )
    parser.add_argument("--output", default="benchmarks/results/tie_breaking.json")
    args = parser.parse_args(argv)

    ds = load_amazon_scientific(args.data_dir)
    split = leave_one_out(ds, args.split)
    data = TrainData.from_split(ds, split)
    users, targets = data.target_pairs(split)
    rows: dict[str, dict[str, float]] = {}
    for name, (model, options) in SCORERS.items():
        t0 = time.perf_counter()
        scorer = build_scorer(model, options).fit(data)
        by_row, higher, ties = [], [], []
        for start in range(0, len(users), 1024):
            chunk = users[start : start + 1024]
            scores = scorer.score(chunk).astype(np.float64)
            scores[np.isnan(scores)] = -np.inf
            hist_rows, hist_cols = data.matrix[chunk].nonzero()
            scores[hist_rows, hist_cols] = -np.inf  # the protocol: history excluded
            own = targets[start : start + 1024]
            by_row.append(target_ranks(scores, np.arange(len(chunk)), own))
            h, t = tied_ranks(scores, np.arange(len(chunk)), own)
            higher.append(h)
            ties.append(t)
        per_user = ranking_metrics(np.concatenate(by_row), np.arange(len(users)), len(users), KS)
        expected = expected_metrics(np.concatenate(higher), np.concatenate(ties))
        row: dict[str, float] = {}
        for metric in expected:
            row[f"{metric} by row"] = round(float(per_user[metric].mean()), 4)
            row[f"{metric} ties at random"] = round(expected[metric], 4)
        top = np.concatenate(by_row) < 10
        row["top-10 targets tied with another item"] = round(float((np.concatenate(ties)[top] > 0).mean()), 4)
        rows[name] = row
        print(name, json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    write_text(out, json.dumps({"command": command, "machine": machine(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
