"""Text encoder throughput on these cores: torch threads 1 vs 2, fp32 vs bf16 autocast, side by side.

    .venv/bin/python benchmarks/encoder_speed.py --data-dir ../shared/data/amazon-scientific --n 1024

Encodes the first N Scientific item texts (64 tokens) with each setting in one run, after a warm-up
batch, and reports items/s and the lowest cosine of each setting's embeddings to fp32's.
Writes benchmarks/results/encoder_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import machine

from recsys.data import load_amazon_scientific
from recsys.data.dataset import item_texts
from recsys.evaluation.report import format_table, write_json
from recsys.text.encoder import TextEncoder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--n", type=int, default=1024, help="texts to encode per setting")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "encoder_speed.json"
    )
    args = parser.parse_args()
    texts = item_texts(load_amazon_scientific(args.data_dir).items)[: args.n]
    rows: dict[str, dict[str, float]] = {}
    reference = None
    for threads in (1, 2):
        for precision in ("fp32", "bf16"):
            torch.set_num_threads(threads)
            encoder = TextEncoder(precision=precision)
            encoder.encode(texts[:64])  # warm-up: load weights, first-call allocations
            t0 = time.perf_counter()
            emb = encoder.encode(texts)
            seconds = time.perf_counter() - t0
            if reference is None:
                reference = emb
            rows[f"{threads} thread(s), {precision}"] = {
                "items/s": round(len(texts) / seconds, 1),
                "min cos to fp32": float(np.min(np.sum(emb * reference, axis=1))),
            }
    print(format_table(rows, ("items/s", "min cos to fp32"), first="setting"))
    write_json(
        args.output,
        {
            "command": "python benchmarks/encoder_speed.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "texts": len(texts),
            "max_length": 64,
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
