"""Stage-1 (projection) settings of the encoder, chosen on validation NDCG@10 over every user.

    .venv/bin/python benchmarks/encoder_sweep.py --data-dir ../shared/data/amazon-scientific \
        [--group 1|2|all] [--runs runs/sweep]

Each configuration trains the projection (`benchmarks/encoder_finetune.py`'s "projection" mode:
stage 1 alone, all else as there) and records its best validation metrics on all 8,442 validation
users (leave-one-out: each user's second-to-last event; the test event is never seen). Group 1 varies
one setting at a time from the defaults; group 2 combines the ones that helped; group 3 goes on
along the best of group 2. The test split is
scored only for the configuration chosen here (`encoder_finetune.py --set ...`). Writes
benchmarks/results/encoder_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine
from encoder_finetune import COMMON, SETTINGS

from recsys.atomic import write_text
from recsys.data import load_amazon_scientific
from recsys.text.train import train_encoder

HERE = Path(__file__).resolve().parent
GROUPS = {
    "1": {
        "defaults": {},
        "temperature 0.07": {"temperature": 0.07},
        "temperature 0.035": {"temperature": 0.035},
        "decay 0.7": {"decay": 0.7},
        "n_recent 5": {"n_recent": 5},
        "head_epochs 24": {"head_epochs": 24},
    },
    "2": {
        "temperature 0.07, decay 0.7": {"temperature": 0.07, "decay": 0.7},
        "temperature 0.1": {"temperature": 0.1},
        "temperature 0.1, decay 0.7": {"temperature": 0.1, "decay": 0.7},
        "head_epochs 24, temperature 0.07, decay 0.7": {"head_epochs": 24, "temperature": 0.07, "decay": 0.7},
        "head_epochs 40": {"head_epochs": 40},
    },
    "3": {
        "head_epochs 40, temperature 0.07, decay 0.7": {"head_epochs": 40, "temperature": 0.07, "decay": 0.7},
    },
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--group", choices=["1", "2", "3", "all"], default="all")
    ap.add_argument("--runs", type=Path, default=Path("runs/sweep"))
    ap.add_argument("--output", type=Path, default=HERE / "results" / "encoder_sweep.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    groups = list(GROUPS) if args.group == "all" else [args.group]
    report = json.loads(args.output.read_text()) if args.output.exists() else {"runs": {}}
    report["machine"] = machine()
    for group in groups:
        for name, extra in GROUPS[group].items():
            t0 = time.perf_counter()
            result = train_encoder(
                dataset,
                args.runs / name.replace(", ", "+").replace(" ", ""),
                resume=False,
                progress=False,
                **{**COMMON, **SETTINGS["projection"], "eval_users": 0, **extra},
            )
            row = {
                "group": group,
                "settings": extra,
                "validation": result.best_metrics,
                "seconds": round(time.perf_counter() - t0),
                "command": "python benchmarks/encoder_sweep.py " + " ".join(sys.argv[1:]),
            }
            report["runs"][name] = row
            print(json.dumps({"name": name, **row}), flush=True)
            write_text(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
