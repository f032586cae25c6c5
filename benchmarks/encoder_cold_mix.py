"""How much of the pretrained space to mix back into the projection: warm and cold-start figures.

    .venv/bin/python benchmarks/encoder_cold_mix.py --data-dir ../shared/data/amazon-scientific \
        [--runs runs/cold-mix] [--mixes 1,0.8,0.7,0.6,0.5,0.4,0.3,0]

Trains the encoder's projection twice with `recsys train`'s settings (stage 1 alone): on
every interaction (the warm model, its early-stopping event held out as usual) and on the dataset
without 10% of the items (the cold model: every interaction with them removed). ``head_mix`` m
replaces the trained projection W by m·W + (1 − m)·I (weight-space ensembling with the pretrained
space); with stage 2 off (the default on CPU) that is exactly what training with ``--set
head_mix=m`` writes, so one training per model serves every m.

For each m: validation and test figures of the warm model on the usual split, and of the cold
model on the cold-start protocol (users whose target is a held-out item, all items ranked).
Beside them, score-level ensembles of the fine-tuned and zero-shot cosines (weight λ on the
fine-tuned one). Zero-shot text pools the same recent items with the same weights. The variant is
chosen on the cold validation split (Recall@50, then NDCG@10); its test gap to zero-shot gets a
paired bootstrap interval. Writes benchmarks/results/encoder_cold_mix.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _machine import machine

from recsys.data import TrainData, cold_items, cold_start_split, load_amazon_scientific, without_items
from recsys.data.dataset import Dataset
from recsys.data.split import Split, make_split
from recsys.evaluation import evaluate
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap
from recsys.scorers.text import TextScorer, resolve_checkpoint
from recsys.text.train import EncoderTrainConfig, EncoderTrainer, train_encoder

KEYS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr")
# What `recsys train` trains on CPU (pipelines/train.py): the projection alone, early stopping on
# 2,000 validation users.
PROJECTION_ONLY = {"epochs": 0.0, "eval_users": 2000}
ENSEMBLES = (0.7, 0.5)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _trained(dataset: Dataset, run: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(pooled pretrained item embeddings, the projection W, training minutes) for ``run``."""
    t0 = time.perf_counter()
    if not (run / "encoder.json").exists():
        train_encoder(dataset, run, resume=False, progress=False, **PROJECTION_ONLY)
    minutes = (time.perf_counter() - t0) / 60
    folder, _ = resolve_checkpoint(run)
    w = np.load(folder / "item_tower" / "projection.npy")
    pooled = EncoderTrainer(dataset, EncoderTrainConfig(), run.parent / f"{run.name}.probe")._pooled_all()
    return pooled.numpy(), w, minutes


def _rows(
    dataset: Dataset, split: Split, pooled: np.ndarray, w: np.ndarray, mixes: list[float], label: str
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    cfg = EncoderTrainConfig()
    data = TrainData.from_split(dataset, split)
    rows, hits50 = {}, {}
    eye = np.eye(w.shape[0], dtype=w.dtype)
    fine, zero = _unit(pooled @ w.T), _unit(pooled)
    variants = (
        [("zero-shot", zero)]
        + [(f"mix {m:g}", _unit(pooled @ (m * w + (1 - m) * eye).T)) for m in mixes]
        # Score-level ensemble: [√λ·fine-tuned, √(1−λ)·zero-shot] per item, so a user's cosine is
        # λ·fine-tuned + (1 − λ)·zero-shot over one pooled user vector.
        + [
            (f"ensemble {lam:g}", np.hstack([np.sqrt(lam) * fine, np.sqrt(1 - lam) * zero]))
            for lam in ENSEMBLES
        ]
    )
    for name, emb in variants:
        scorer = TextScorer(n_recent=cfg.n_recent, decay=cfg.decay)
        res = evaluate(
            scorer.fit(data, item_embeddings=emb.astype(np.float32)), data, split, keep_per_target=True
        )
        assert res.per_target is not None
        rows[name] = {k: round(res.metrics[k], 4) for k in KEYS}
        hits50[name] = (res.per_target.sort("user")["rank"].to_numpy() < 50).astype(np.float64)
        print(f"{label:>10} {name:>10} {rows[name]}", flush=True)
    return rows, hits50


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--runs", type=Path, default=Path("runs/cold-mix"), help="encoder runs (reused)")
    parser.add_argument("--mixes", default="1,0.8,0.7,0.6,0.5,0.4,0.3,0")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "encoder_cold_mix.json"
    )
    args = parser.parse_args()
    mixes = [float(m) for m in args.mixes.split(",")]
    dataset = load_amazon_scientific(args.data_dir)
    held = cold_items(dataset, 0.1, seed=0)
    report: dict[str, object] = {
        "command": "python benchmarks/encoder_cold_mix.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {**vars(EncoderTrainConfig()), **PROJECTION_ONLY},
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    hits: dict[str, dict[str, np.ndarray]] = {}
    minutes = {}
    for kind, train_on in (("warm", dataset), ("cold", without_items(dataset, held))):
        pooled, w, minutes[kind] = _trained(train_on, args.runs / kind)
        for which in ("valid", "test"):
            split = (
                make_split(dataset, which)
                if kind == "warm"
                else cold_start_split(dataset, which, item_fraction=0.1, seed=0)
            )
            label = f"{kind} {which}"
            results[label], hits[label] = _rows(dataset, split, pooled, w, mixes, label)
    cold_valid = results["cold valid"]
    candidates = [f"mix {m:g}" for m in mixes] + [f"ensemble {lam:g}" for lam in ENSEMBLES]
    chosen = max(candidates, key=lambda n: (cold_valid[n]["recall@50"], cold_valid[n]["ndcg@10"]))
    gap = paired_bootstrap(
        hits["cold test"][chosen], hits["cold test"]["zero-shot"], n_resamples=2000, seed=0
    )
    report.update(results=results, chosen=chosen, cold_test_recall50_gap=gap, train_minutes=minutes)
    print(f"\nchosen on cold validation: {chosen}")
    print(f"cold test Recall@50 {results['cold test'][chosen]['recall@50']}")
    print(f"  vs zero-shot {results['cold test']['zero-shot']['recall@50']}: {gap['mean_difference']:+.4f}")
    print(f"  (95% CI {gap['low']:+.4f} to {gap['high']:+.4f}); warm test {results['warm test'][chosen]}")
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
