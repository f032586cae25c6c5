"""Text encoder throughput and quality, side by side in one run.

    .venv/bin/python benchmarks/encoder_speed.py --data-dir ../shared/data/amazon-scientific \
        [--checkpoint runs/encoder-full] [--n 1024] [--threads-sweep]

1. Our encoder path (`TextEncoder.encode`) against the plain transformers forward pass a user would
   write (tokenise with padding, forward, mean-pool, normalise), same model, texts, batch size and
   max length, alternating runs; the ratio is our overhead (below 1: faster).
2. fp32 vs bf16 autocast vs dynamic int8: items/s on the same texts, the lowest cosine to fp32, and
   the test-split NDCG@10 of the text scorer when every item is embedded at that precision.
3. With --threads-sweep: fp32 and bf16 with 1 and 2 torch threads.

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

from recsys.data import TrainData, leave_one_out, load_amazon_scientific
from recsys.evaluation import evaluate
from recsys.evaluation.report import format_table, write_json
from recsys.scorers.text import TextScorer, TextScorerConfig, config_from_checkpoint
from recsys.text.encoder import TextEncoder, mean_pool


def raw_forward(encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    """The plain transformers recipe: padded batches in input order (plus the checkpoint's projection)."""
    tok, model, cfg = encoder.tokenizer, encoder.model, encoder.config
    projection = encoder._projection
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), cfg.batch_size):
            batch = tok(
                texts[s : s + cfg.batch_size],
                padding=True,
                truncation=True,
                max_length=cfg.max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
            if projection is not None:
                pooled = pooled @ projection.T
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def timed(fn, *args) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--checkpoint", help="a `recsys train-encoder` run (default: zero-shot MiniLM)")
    parser.add_argument("--n", type=int, default=1024, help="texts timed per setting")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timing rounds, ours vs raw")
    parser.add_argument("--threads-sweep", action="store_true")
    parser.add_argument(
        "--skip-ndcg", action="store_true", help="only time; no full-catalogue NDCG per precision"
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "encoder_speed.json"
    )
    args = parser.parse_args()

    dataset = load_amazon_scientific(args.data_dir)
    split = leave_one_out(dataset, "test")
    data = TrainData.from_split(dataset, split)
    base = config_from_checkpoint(TextScorerConfig(checkpoint=args.checkpoint, n_recent=3))
    texts = data.item_text[: args.n]
    report: dict[str, object] = {
        "command": "python benchmarks/encoder_speed.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "texts": len(texts),
        "model": args.checkpoint or "zero-shot",
    }

    # 1. Overhead of our path against the raw forward pass.
    enc = TextEncoder(base.encoder_config())
    enc.encode(texts[:64])
    ours_t, raw_t = [], []
    for _ in range(args.repeats):
        t, ours = timed(enc.encode, texts)
        ours_t.append(t)
        t, raw = timed(raw_forward, enc, texts)
        raw_t.append(t)
    overhead = {
        "ours items/s": len(texts) / min(ours_t),
        "raw items/s": len(texts) / min(raw_t),
        "ours / raw time": min(ours_t) / min(raw_t),
        "max |ours - raw|": float(np.abs(ours - raw).max()),
    }
    print(format_table({"encoder path": overhead}, tuple(overhead), first="comparison"))
    report["overhead"] = overhead

    # 2. Precisions: speed, parity, and NDCG@10 of the scorer with every item at that precision.
    rows: dict[str, dict[str, float]] = {}
    reference = None
    for precision in ("fp32", "bf16", "int8"):
        cfg = TextScorerConfig(**{**base.__dict__, "precision": precision, "checkpoint": None})
        encoder = TextEncoder(cfg.encoder_config())
        encoder.encode(texts[:32])
        seconds, emb = timed(encoder.encode, texts)
        if reference is None:
            reference = emb
        row = {
            "items/s": len(texts) / seconds,
            "min cos to fp32": float(np.sum(emb * reference, axis=1).min()),
        }
        if not args.skip_ndcg:
            all_items = encoder.encode(data.item_text)
            scorer = TextScorer(cfg).fit(data, item_embeddings=all_items)
            row["ndcg@10"] = evaluate(scorer, data, split).metrics["ndcg@10"]
        rows[precision] = row
        print(f"{precision}: {row}", flush=True)
    print(format_table(rows, ("items/s", "min cos to fp32", "ndcg@10"), first="precision"))
    report["precisions"] = rows

    if args.threads_sweep:
        sweep = {}
        for threads in (1, 2):
            for precision in ("fp32", "bf16"):
                torch.set_num_threads(threads)
                encoder = TextEncoder(precision=precision)
                encoder.encode(texts[:32])
                seconds, _ = timed(encoder.encode, texts)
                sweep[f"{threads} thread(s), {precision}"] = {"items/s": len(texts) / seconds}
        print(format_table(sweep, ("items/s",), first="setting"))
        report["threads"] = sweep
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
