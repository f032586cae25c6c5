"""Fine-tune the text encoder on Amazon Scientific and measure it on the test split.

    .venv/bin/python benchmarks/encoder_finetune.py --data-dir ../shared/data/amazon-scientific \
        --runs runs/bench [--modes full,lora,projection] [--minutes 12] [--skip-cold] [--set KEY=VALUE]

For each mode: `recsys train-encoder` settings below, trained into RUNS/<mode>, its wall time, and
the test-split metrics of the fine-tuned scorer beside zero-shot text and ALS. Then the cold-start
protocol: 10% of items held out of training entirely (encoder retrained without them), scored for
the users whose test target is one of them. Writes benchmarks/results/encoder_finetune.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _machine import machine

from recsys.data import (
    TrainData,
    cold_items,
    cold_start_split,
    leave_one_out,
    load_amazon_scientific,
    without_items,
)
from recsys.evaluation import evaluate
from recsys.evaluation.report import format_table, write_json
from recsys.scorers import build_scorer
from recsys.text.train import EncoderTrainConfig, train_encoder

# The settings reported in benchmarks/RESULTS.md; both modes share everything but the mode and LR.
SETTINGS = {
    "full": {"mode": "full", "train_layers": 2, "learning_rate": 1e-5},
    "lora": {"mode": "lora", "train_layers": 2, "learning_rate": 1e-4, "lora_rank": 16, "lora_alpha": 32},
    # Stage 1 alone (the projection over the frozen transformer): what `recsys train` uses on CPU.
    "projection": {"mode": "full", "epochs": 0.0},
}
COMMON = {
    "n_recent": 3,
    "max_length": 64,
    "epochs": 2.0,
    "eval_every": 100,
    "patience": 2,
    "bank_refresh": 0,
    "eval_users": 2000,
}
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time limit per run")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold-start protocol (first mode of --modes)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training setting (all runs)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "encoder_finetune.json"
    )
    args = parser.parse_args()
    from recsys.config import parse_override

    for text in args.set:
        path, value = parse_override(text)
        COMMON[".".join(path)] = value

    dataset = load_amazon_scientific(args.data_dir)
    split = leave_one_out(dataset, "test")
    data = TrainData.from_split(dataset, split)
    report: dict[str, object] = {
        "command": "python benchmarks/encoder_finetune.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "settings": {m: {**COMMON, **SETTINGS[m]} for m in SETTINGS},
    }
    # Zero-shot pools the user's recent items as the fine-tuned scorer does (same items, same weights).
    pooling = {"n_recent": COMMON["n_recent"], "decay": COMMON.get("decay", EncoderTrainConfig().decay)}
    zero_shot = f"text zero-shot (last {pooling['n_recent']} items, decay {pooling['decay']})"
    rows: dict[str, dict[str, float]] = {}
    for name, opts in (("als", {}), (zero_shot, pooling)):
        scorer = build_scorer("als" if name == "als" else "text", opts).fit(data)
        rows[name] = evaluate(scorer, data, split).metrics
    training = {}
    for mode in [] if args.cold_only else args.modes.split(","):
        run = args.runs / mode
        t0 = time.perf_counter()
        result = train_encoder(
            dataset,
            run,
            resume=False,
            progress=False,
            **{**COMMON, **SETTINGS[mode], "max_minutes": args.minutes},
        )
        wall = time.perf_counter() - t0
        training[mode] = {
            "wall_minutes": round(wall / 60, 2),
            "steps": result.steps,
            "best_step": result.best_step,
            "stopped": result.stopped,
            "validation_best": result.best_metrics,
            "history": result.history,
        }
        scorer = build_scorer("encoder", {"checkpoint": str(run)}).fit(data)
        rows[f"fine-tuned ({mode})"] = evaluate(scorer, data, split).metrics
        print(
            f"{mode}: {wall / 60:.1f} min, best step {result.best_step}: {rows[f'fine-tuned ({mode})']}",
            flush=True,
        )
    if not args.cold_only:
        print(format_table(rows, METRICS))
        report["test"] = rows
    report["training"] = training

    if not args.skip_cold:
        held = cold_items(dataset, 0.1, seed=0)
        cold = cold_start_split(dataset, "test", item_fraction=0.1, seed=0)
        cold_data = TrainData.from_split(dataset, cold)
        mode = args.modes.split(",")[0]
        t0 = time.perf_counter()
        train_encoder(
            without_items(dataset, held),
            args.runs / f"{mode}-cold",
            resume=False,
            progress=False,
            **{**COMMON, **SETTINGS[mode], "max_minutes": args.minutes},
        )
        cold_rows = {}
        for name, scorer_name, opts in (
            ("als", "als", {}),
            (zero_shot, "text", pooling),
            (
                f"fine-tuned ({mode}, trained without the held-out items)",
                "encoder",
                {"checkpoint": str(args.runs / f"{mode}-cold")},
            ),
        ):
            cold_rows[name] = evaluate(
                build_scorer(scorer_name, opts).fit(cold_data), cold_data, cold
            ).metrics
        print(format_table(cold_rows, METRICS))
        report["cold_start"] = {
            "protocol": cold.protocol,
            "results": cold_rows,
            "train_minutes": round((time.perf_counter() - t0) / 60, 2),
        }
    write_json(args.output, report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
