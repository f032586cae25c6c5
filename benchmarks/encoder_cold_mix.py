"""The fine-tuned encoder on warm and cold-start targets: its defaults and the variants around them.

    .venv/bin/python benchmarks/encoder_cold_mix.py --data-dir ../shared/data/amazon-scientific \
        [--runs runs/cold-mix] [--mixes 1,0.8,0.6,0.4]

Trains the encoder's projection twice with `recsys train`'s settings (stage 1 alone, every other
setting at its default, ``head_mix`` 1 so one training serves every mix): on every interaction
(the warm model, its early-stopping event held out as usual) and on the dataset without 10% of
the items (the cold model: every interaction with them removed). ``head_mix`` m replaces the
trained projection W by m·W + (1 − m)·I (weight-space ensembling with the pretrained space); with
stage 2 off that is exactly what training with ``--set head_mix=m`` writes. Each variant is scored
through ``TextScorer`` over the trained checkpoint, so the item prior (``head_item_bias``) and the
prior of never-seen items come from the checkpoint as in serving.

Splits: warm validation and test (the usual ones); cold validation and test (users whose target
is a held-out item, all items ranked); and "mixed" (the cold model, every target of the usual
split: what the held-out items cost or give when most targets are items the model was trained
on). Rows: zero-shot (the same recent items pooled with the same weights); each mix with the item
prior and without it (cosine alone); and, at the default mix, the never-seen items' prior moved
to quantiles of the known items' priors, which shows how much exposure new items get against what
the trained ones lose. The default configuration's cold test gap to zero-shot gets a paired
bootstrap interval. Writes benchmarks/results/encoder_cold_mix.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl
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
# 2,000 validation users; head_mix 1 here so that every mix is computed from one training.
PROJECTION_ONLY = {"epochs": 0.0, "eval_users": 2000, "head_mix": 1.0}
DEFAULT_MIX = EncoderTrainConfig().head_mix
PRIOR_QUANTILES = (50, 75, 90)
FRACTION, SEED = 0.1, 0


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


def _splits(dataset: Dataset, kind: str) -> dict[str, Split]:
    if kind == "warm":
        return {f"warm {w}": make_split(dataset, w) for w in ("valid", "test")}
    out = {}
    for which in ("valid", "test"):
        cold = cold_start_split(dataset, which, item_fraction=FRACTION, seed=SEED)
        every = make_split(dataset, which)
        out[f"cold {which}"] = cold
        out[f"mixed {which}"] = Split(
            name=which, train=cold.train, targets=every.targets, protocol={**cold.protocol, "kind": "mixed"}
        )
    return out


def _rows(
    dataset: Dataset,
    run: Path,
    split: Split,
    pooled: np.ndarray,
    w: np.ndarray,
    mixes: list[float],
    label: str,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    cfg = EncoderTrainConfig()
    data = TrainData.from_split(dataset, split)
    eye = np.eye(w.shape[0], dtype=w.dtype)
    fine = TextScorer(checkpoint=str(run))  # the checkpoint's user-side settings and item prior
    known = fine.fit(data, item_embeddings=_unit(pooled)).item_bias
    assert known is not None, "the checkpoint has no item prior (head_item_bias)"
    trained = pl.read_parquet(str(fine.config.item_bias_path))["item_id"]  # items with a learned prior
    seen = np.zeros(data.n_items, dtype=bool)
    seen[data.items.index(trained)[data.items.index(trained) >= 0]] = True
    variants: list[tuple[str, TextScorer, np.ndarray, float | None]] = [
        ("zero-shot", TextScorer(n_recent=cfg.n_recent, decay=cfg.decay), _unit(pooled), None)
    ]
    for m in mixes:
        emb = _unit(pooled @ (m * w + (1 - m) * eye).T)
        variants += [(f"mix {m:g}", fine, emb, np.nan), (f"mix {m:g}, no prior", fine, emb, None)]
    emb = _unit(pooled @ (DEFAULT_MIX * w + (1 - DEFAULT_MIX) * eye).T)
    if not label.startswith("warm"):
        for q in PRIOR_QUANTILES:
            prior = float(np.percentile(known[seen], q))
            variants.append((f"mix {DEFAULT_MIX:g}, new-item prior q{q}", fine, emb, prior))
    rows, hits50 = {}, {}
    for name, scorer, item_emb, prior in variants:
        scorer.fit(data, item_embeddings=item_emb.astype(np.float32))
        if scorer is fine:
            if prior is None:
                scorer.item_bias = None
            elif not np.isnan(prior):
                assert scorer.item_bias is not None
                scorer.item_bias = np.where(seen, scorer.item_bias, prior).astype(np.float32)
        res = evaluate(scorer, data, split, keep_per_target=True)
        assert res.per_target is not None
        rows[name] = {k: round(res.metrics[k], 4) for k in KEYS}
        hits50[name] = (res.per_target.sort("user")["rank"].to_numpy() < 50).astype(np.float64)
        print(f"{label:>12} {name:>32} {rows[name]}", flush=True)
    return rows, hits50


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--runs", type=Path, default=Path("runs/cold-mix"), help="encoder runs (reused)")
    parser.add_argument("--mixes", default="1,0.8,0.6,0.4")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "encoder_cold_mix.json"
    )
    args = parser.parse_args()
    mixes = sorted({float(m) for m in args.mixes.split(",")} | {DEFAULT_MIX}, reverse=True)
    dataset = load_amazon_scientific(args.data_dir)
    held = cold_items(dataset, FRACTION, seed=SEED)
    report: dict[str, object] = {
        "command": "python benchmarks/encoder_cold_mix.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {**vars(EncoderTrainConfig()), **PROJECTION_ONLY},
        "default_mix": DEFAULT_MIX,
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    hits: dict[str, dict[str, np.ndarray]] = {}
    minutes = {}
    for kind, train_on in (("warm", dataset), ("cold", without_items(dataset, held))):
        run = args.runs / kind
        pooled, w, minutes[kind] = _trained(train_on, run)
        for label, split in _splits(dataset, kind).items():
            results[label], hits[label] = _rows(dataset, run, split, pooled, w, mixes, label)
    default = f"mix {DEFAULT_MIX:g}"
    gap = paired_bootstrap(
        hits["cold test"][default], hits["cold test"]["zero-shot"], n_resamples=2000, seed=0
    )
    report.update(results=results, default=default, cold_test_recall50_gap=gap, train_minutes=minutes)
    cold_test = results["cold test"]
    print(f"\ndefaults ({default}, item prior on): cold test Recall@50 {cold_test[default]['recall@50']}")
    print(f"  vs zero-shot {results['cold test']['zero-shot']['recall@50']}: {gap['mean_difference']:+.4f}")
    print(f"  (95% CI {gap['low']:+.4f} to {gap['high']:+.4f}); warm test {results['warm test'][default]}")
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
