"""A scorer's settings on Amazon Scientific (SASRec by default), scored on one split (validation by default).

    .venv/bin/python benchmarks/sasrec_sweep.py --data-dir ../shared/data/amazon-scientific \
        '{"threads": 1}' '{"threads": 1, "dropout": 0.5, "epochs": 100}'
    .venv/bin/python benchmarks/sasrec_sweep.py --model sknn --output benchmarks/results/sknn_sweep.json \
        '{"window": 0}' '{"window": 12}'

Each argument is a JSON object of the model's config options (`--model`, a registry name; default
sasrec); each is fitted on the split's training data and ranked over the whole catalogue (full
ranking, history excluded). Prints one line per setting and writes benchmarks/results/sasrec_sweep.json.

`--embeddings CHECKPOINT`: a fine-tuned encoder (a folder `recsys train` left, e.g.
`artifacts/scientific.work/labels/encoder_fold0` for the validation split) whose item embeddings
every fit receives, for seqlinear's `neighbour_prior`:

    .venv/bin/python benchmarks/sasrec_sweep.py --model seqlinear \
        --embeddings artifacts/scientific.work/labels/encoder_fold0 \
        '{}' '{"neighbour_prior": 1.0, "text_prior": 0.015}'
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

from recsys.data import TrainData, load_amazon_scientific
from recsys.data.split import make_split
from recsys.evaluation import evaluate
from recsys.evaluation.report import write_json
from recsys.scorers import SCORERS, build_scorer
from recsys.scorers.text import EncoderScorer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", default=["{}"], help="JSON objects of the model's options")
    ap.add_argument("--model", choices=sorted(SCORERS), default="sasrec", help="the scorer (default sasrec)")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--split", choices=["valid", "test"], default="valid")
    ap.add_argument(
        "--embeddings",
        type=Path,
        help="an encoder checkpoint whose item embeddings each fit gets (seqlinear's neighbour_prior)",
    )
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "sasrec_sweep.json")
    args = ap.parse_args()
    dataset = load_amazon_scientific(args.data_dir)
    split = make_split(dataset, args.split)
    data = TrainData.from_split(dataset, split)
    fit_options = {}
    if args.embeddings:
        encoder = EncoderScorer(checkpoint=str(args.embeddings), item_bias=False).fit(data)
        fit_options["item_embeddings"] = encoder.item_embeddings
    rows = []
    for text in args.settings:
        options = json.loads(text)
        t0 = time.perf_counter()
        scorer = build_scorer(args.model, options).fit(data, **fit_options)
        seconds = time.perf_counter() - t0
        metrics = evaluate(scorer, data, split, ks=(10, 50), coverage_k=()).metrics
        row = {
            "settings": options,
            "seconds": round(seconds, 1),
            **{k: round(v, 4) for k, v in metrics.items()},
        }
        rows.append(row)
        print(
            f"{json.dumps(options)}: Recall@10 {row['recall@10']:.4f} NDCG@10 {row['ndcg@10']:.4f} "
            f"Recall@50 {row['recall@50']:.4f} ({seconds:.0f} s)",
            flush=True,
        )
    command = "python benchmarks/sasrec_sweep.py " + " ".join(
        f"'{a}'" if a.startswith("{") else a for a in sys.argv[1:]
    )
    write_json(
        args.output,
        {
            "command": command,
            "machine": machine(),
            "model": args.model,
            "split": args.split,
            "embeddings": str(args.embeddings) if args.embeddings else None,
            "runs": rows,
        },
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
