"""``recsys evaluate``, ``recsys train-encoder`` and ``recsys train``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from recsys.cli import add_data_arguments, load_dataset
from recsys.config import apply_overrides, load_toml, make_config
from recsys.errors import ConfigError
from recsys.evaluation.report import format_table, write_json

log = logging.getLogger("recsys")

EPILOG_EVALUATE = """\
models:
  popularity  most-interacted items, the same list for everyone
  covisit     item -> next-item transitions (and optional co-occurrence) of the user's recent items
  als         implicit ALS on the binary user x item matrix (128 factors, alpha 20, reg 0.05, 20 iters)
  bpr         implicit BPR on the same matrix
  ease        EASE: closed-form item x item model on the same matrix (l2 100)
  sasrec      SASRec: a causal transformer over the item sequence (item ids plus their text), full softmax
  text        zero-shot all-MiniLM-L6-v2: cosine of item texts to the user's recent items
  encoder     a fine-tuned encoder from `recsys train-encoder` (--set encoder.checkpoint=RUN_DIR)
  hybrid      the ranking stage of an artifact from `recsys train` (--set hybrid.artifact=DIR): its
              scorers refitted on this split's training data, its LambdaRank model as trained

config file (--config, TOML):
  [evaluate]
  models = ["als", "text"]
  split = "valid"
  [models.als]
  factors = 64

overrides (--set, repeatable): --set als.factors=64 --set text.n_recent=3

examples:
  recsys evaluate --dataset amazon-scientific --data-dir ../shared/data/amazon-scientific \\
      --models popularity,covisit,als,bpr,text --split test --output results.json
  recsys evaluate --items items.csv --interactions events.parquet \\
      --interaction-columns user_id=customer,item_id=sku,timestamp=ts --unknown-items drop
"""


EPILOG_TRAIN_ENCODER = """\
config file (--config, TOML), every key optional:
  [encoder]
  mode = "lora"            # full | lora
  user_input = "items"     # items: pool recent items' embeddings; text: user text through the user tower
  n_recent = 3             # items that make the user side
  max_length = 64          # item text tokens
  batch_size = 64          # pairs per step (in-batch negatives)
  learning_rate = 0.0      # 0: 5e-5 full, 5e-4 LoRA
  epochs = 1.0
  max_minutes = 25         # stop (and keep the best checkpoint) after this much training time
  eval_every = 100         # steps between validation NDCG@10 evaluations (early stopping)
  hard_negatives = 0       # extra negatives per user from ALS's top items
  lora_rank = 16
  lora_alpha = 32

overrides (--set, repeatable): --set mode=lora --set max_minutes=20

example:
  recsys train-encoder --dataset amazon-scientific --data-dir ../shared/data/amazon-scientific \\
      --out runs/encoder --set mode=full
  recsys evaluate --dataset amazon-scientific --data-dir ../shared/data/amazon-scientific \\
      --models text,encoder --set encoder.checkpoint=runs/encoder
"""


EPILOG_TRAIN = """\
stages: encoder and SASRec (trained on the histories before each label fold's labels) -> scorers,
candidates and features on each label fold -> LightGBM LambdaRank (an ensemble of seeds) -> encoder
and SASRec retrained, scorers refitted, on every interaction -> ARTIFACT.

config file (--config, TOML), every section and key optional:
  [recommender]
  label_folds = 2                # labelled events per user the ranker learns from
  label_groups = 1               # >1: each group's label features from scorers that also saw the
                                 # other users' later events (leave-one-out; measured lower)
  count_features = "per_10k"     # counts in the features per 10,000 interactions, or "raw"
  history_features = false       # true: features over the whole history, beside the last five items
  [recommender.candidates]       # source -> how many of its best items become candidates
  als = 100
  covisit = 50
  [recommender.cold_candidates]  # sources only for a user with no history (anonymous visitors)
  popularity = 20
  [recommender.scorers.cooc]     # any scorer by name: {model = registry name, options...}
  model = "covisit"
  cooccurrence_weight = 1.0
  [recommender.scorers.sknn]     # e.g. session-based neighbours as one more scorer (candidates: sknn = 100)
  model = "sknn"
  [recommender.scorers.seqlinear]
  model = "seqlinear"
  text_prior = 0.03              # pull its item x item weights toward the items' word similarity (0: off)
  [recommender.scorers.lexical]  # TF-IDF word match to the recent items as one more scorer
  model = "lexical"
  [ranker]
  num_leaves = 31
  learning_rate = 0.05
  cv_folds = 5                   # LambdaRank models, each stopped on the users it did not learn from
  min_data_in_leaf = 200         # pairs per leaf at least
  later_gain = 0.5               # the user's next event after a fold's label: a weaker positive (0: none)
  exclude_features = ["factor_sim_last"]  # ablation: leave features out of the model
  monotone = { seqlinear_rank = -1, sasrec_score = 1 }  # a feature that may act one way only
  categorical = ["category"]     # code columns read as categories: category, brand, item
  path_smooth = 10.0             # pull small leaves toward their parent (0: off); extra_trees, max_bin too
  [sasrec]
  enabled = true                 # the sequential model (a causal transformer over item ids and text)
  architecture = "transformer"   # or "gru": a recurrent reader of the same item vectors
  epochs = 20
  [encoder]
  enabled = true                 # false: no fine-tuned encoder (zero-shot text only)
  checkpoint = "runs/encoder"    # use this run instead of training one
  epochs = 0                     # 0: the projection stage only (the CPU default)

overrides (--set, repeatable): --set ranker.num_leaves=63 --set recommender.label_folds=2

example:
  recsys train --dataset amazon-scientific --data-dir ../shared/data/amazon-scientific \\
      --out artifacts/scientific --evaluate
"""


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipelines.evaluate import DEFAULT_MODELS, EvaluationJob, run_evaluation

    config = load_toml(args.config) if args.config else {}
    config = apply_overrides(
        {"models": config.get("models", {}), **config}, [f"models.{s}" for s in args.set]
    )
    section = dict(config.get("evaluate", {}))
    unknown = sorted(set(config) - {"evaluate", "models"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: evaluate, models")
    models = args.models.split(",") if args.models else section.pop("models", list(DEFAULT_MODELS))
    section.pop("models", None)
    job_args: dict[str, Any] = {
        "models": [m.strip() for m in models if m.strip()],
        "model_options": config.get("models", {}),
        "split": args.split or section.pop("split", "test"),
        "split_kind": args.split_kind or section.pop("split_kind", "auto"),
        "progress": not args.no_progress,
    }
    section.pop("split", None)
    section.pop("split_kind", None)
    if args.chunk_size:
        section["chunk_size"] = args.chunk_size
    if args.cold_items:
        section["cold_items"] = args.cold_items
        section["cold_seed"] = args.cold_seed
    allowed = {"ks", "coverage_k", "chunk_size", "split_options", "cold_items", "cold_seed"}
    if set(section) - allowed:
        raise ConfigError(
            f"unknown [evaluate] key(s) {sorted(set(section) - allowed)}; valid: "
            f"models, split, split_kind, {', '.join(sorted(allowed))}"
        )
    for key in ("ks", "coverage_k"):
        if key in section:
            section[key] = tuple(int(k) for k in section[key])
    job = EvaluationJob(**job_args, **section)
    dataset = load_dataset(args)
    log.info("dataset %s: %s", dataset.name, dataset.summary())
    report = run_evaluation(dataset, job)
    proto = report["protocol"]
    print(
        f"\n{dataset.name}, split {proto['split']} ({proto['kind']}), {proto['users']} users, "
        f"full ranking over {dataset.items.height} items\n"
    )
    print(format_table(report["results"]))
    if args.slices:
        for name, slices in report["slices"].items():
            for slice_name, rows in slices.items():
                print(f"\n{name} by {slice_name}")
                print(
                    format_table(rows, ("cases", "recall@10", "ndcg@10", "recall@50", "mrr"), first="slice")
                )
    print(f"\ntotal {report['timing']['total_s']:.1f}s")
    if args.output:
        write_json(args.output, report)
        print(f"wrote {args.output}")
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from recsys.data import cold_items, without_items
    from recsys.text.train import EncoderTrainConfig, train_encoder

    config = load_toml(args.config) if args.config else {}
    unknown = sorted(set(config) - {"encoder"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; valid: encoder")
    options = apply_overrides({"encoder": config.get("encoder", {})}, [f"encoder.{s}" for s in args.set])[
        "encoder"
    ]
    if "lora_targets" in options:
        options["lora_targets"] = tuple(options["lora_targets"])
    cfg = make_config(EncoderTrainConfig, None, options)
    dataset = load_dataset(args)
    if args.holdout_items:
        dataset = without_items(dataset, cold_items(dataset, args.holdout_items, args.holdout_seed))
    if args.fresh and args.out.exists():
        (args.out / "state.pt").unlink(missing_ok=True)
    result = train_encoder(dataset, args.out, cfg, resume=not args.fresh, progress=not args.no_progress)
    minutes = result.seconds / 60
    print(f"\nstopped: {result.stopped}; {result.steps} steps, {result.examples} pairs in {minutes:.1f} min")
    print(f"best validation checkpoint: step {result.best_step}")
    print(format_table({"validation (best)": result.best_metrics}))
    print(f"\nuse it: recsys evaluate ... --models encoder --set encoder.checkpoint={args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipelines.train import TrainJob, run_training

    job = TrainJob.from_config(
        load_toml(args.config) if args.config else {},
        args.out,
        list(args.set),
        work_dir=args.work_dir,
        evaluate=args.evaluate,
        holdout_out=args.holdout_artifact,
        progress=not args.no_progress,
    )
    if args.holdout_artifact and not args.evaluate:
        raise ConfigError("--holdout-artifact needs --evaluate (it is the test split's recommender)")
    job.recommender_config(None)  # refuse a bad configuration before any work
    dataset = load_dataset(args)
    log.info("dataset %s: %s", dataset.name, dataset.summary())
    report = run_training(dataset, job)
    print(f"\nwrote {args.out}")
    print("\nstage times (s):")
    for stage, sec in report["stage_seconds"].items():
        print(f"  {stage:<52} {sec:>8.1f}")
    recall = report["validation"]["fold 0"]["candidate_recall"]
    print(f"\ncandidate recall on the validation targets: merged {recall['merged']:.4f}")
    depths = tuple(next(v for k, v in recall.items() if k != "merged"))
    print(format_table({k: v for k, v in recall.items() if k != "merged"}, depths, first="source"))
    info = report["ranker"]
    line = f"\nranker: holdout NDCG@10 {info['holdout_ndcg@10']:.4f} at round {info['best_round']}"
    if "cv_folds" in info:
        line = (
            f"\nranker: out-of-fold NDCG@10 {info['holdout_ndcg@10']:.4f} over {info['holdout_users']} users"
            f" ({len(info['best_rounds'])} models, rounds {info['best_rounds']})"
        )
    elif "holdout_ndcg@10_ensemble" in info:
        n, ndcg = len(info["best_rounds"]), info["holdout_ndcg@10_ensemble"]
        line += f"; the {n} models averaged {ndcg:.4f}"
    if "holdout_ndcg@10_every_user" in info:
        line += f" ({info['holdout_ndcg@10_every_user']:.4f} per labelled user, 0 without the target)"
    if info.get("holdout_ndcg@10_every_user_by_fold"):
        folds = ", ".join(f"{v:.4f}" for v in info["holdout_ndcg@10_every_user_by_fold"])
        line += f"; per label fold {folds}"
    print(line)
    print("\nfeature importance (gain, top 10):")
    for name, gain in list(report["importance"].items())[:10]:
        print(f"  {name:<28} {gain:>12.1f}")
    if "test" in report:
        print("\ntest split, full ranking:")
        print(format_table(report["test"]))
    if args.output:
        write_json(args.output, report)
        print(f"wrote {args.output}")
    return 0


def add_train_parsers(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="fit models and rank the whole catalogue for held-out targets",
        description="Fit each model on the training split and report full-ranking "
        "metrics (history excluded, ties broken by item row).",
        epilog=EPILOG_EVALUATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(ev)
    ev.add_argument("--models", help="comma-separated model names (default: all)")
    ev.add_argument("--split", choices=["test", "valid"], help="which held-out targets (default: test)")
    ev.add_argument(
        "--split-kind",
        choices=["auto", "leave-one-out", "temporal"],
        help="auto: temporal when the data has timestamps, else leave-one-out",
    )
    ev.add_argument("--config", type=Path, help="TOML file with [evaluate] and [models.NAME] sections")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override a model option, e.g. als.factors=64 (repeatable)",
    )
    ev.add_argument("--chunk-size", type=int, help="users scored per batch (default 1024)")
    ev.add_argument(
        "--slices", action="store_true", help="also print metrics by history length and item count"
    )
    ev.add_argument(
        "--cold-items",
        type=float,
        metavar="FRACTION",
        help="cold-start protocol: hold out this share of items entirely and score only users whose "
        "target is one of them (e.g. 0.1)",
    )
    ev.add_argument("--cold-seed", type=int, default=0, help="seed choosing the held-out items (default 0)")
    ev.add_argument("--output", type=Path, help="write the JSON report here")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)

    te = sub.add_parser(
        "train-encoder",
        help="fine-tune the text encoder on next-item pairs (full or LoRA)",
        description="Fine-tune the two-tower text encoder on the validation split's training data, "
        "early-stopping on validation NDCG@10. Interrupted runs resume from RUN_DIR/state.pt.",
        epilog=EPILOG_TRAIN_ENCODER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(te)
    te.add_argument(
        "--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (checkpoints, state)"
    )
    te.add_argument("--config", type=Path, help="TOML file with an [encoder] section")
    te.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override an [encoder] option"
    )
    te.add_argument("--fresh", action="store_true", help="ignore a saved state in RUN_DIR and start over")
    te.add_argument(
        "--holdout-items",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="train without any interaction of this share of items (for the cold-start protocol)",
    )
    te.add_argument("--holdout-seed", type=int, default=0, help="seed choosing the held-out items")
    te.add_argument("--no-progress", action="store_true", help="no progress bar")
    te.set_defaults(func=cmd_train_encoder)

    tr = sub.add_parser(
        "train",
        help="train every stage (encoder, CF, ranker) into one artifact folder",
        description="Train the hybrid recommender: the fine-tuned encoder, the CF scorers and the "
        "LambdaRank ranking stage, and write them as one artifact folder with a manifest.",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_arguments(tr)
    tr.add_argument("--out", type=Path, required=True, metavar="ARTIFACT", help="artifact folder to write")
    tr.add_argument("--config", type=Path, help="TOML file with [recommender], [ranker], [encoder]")
    tr.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override an option"
    )
    tr.add_argument("--work-dir", type=Path, help="encoder runs (default: ARTIFACT.work beside it)")
    tr.add_argument(
        "--evaluate", action="store_true", help="also rank the test split: hybrid beside each scorer"
    )
    tr.add_argument(
        "--holdout-artifact",
        type=Path,
        metavar="DIR",
        help="with --evaluate: also save the test-split recommender (each user's last event held "
        "out) as an artifact, to serve held-out users in `recsys ab simulate`",
    )
    tr.add_argument("--output", type=Path, help="write the JSON report here")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)
