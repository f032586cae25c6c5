"""The ``recsys`` command: one entry point, sub-commands, TOML configs with command-line overrides.

Exit codes: 0 success, 1 bad data or artifacts, 2 usage or configuration errors.
The CLI is the one place that reaches the ``pipelines`` package, and only when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.config import apply_overrides, load_toml, make_config
from recsys.errors import ArtifactError, ConfigError, DataError
from recsys.evaluation.report import format_table, write_json

log = logging.getLogger("recsys")

EPILOG_EVALUATE = """\
models:
  popularity  most-interacted items, the same list for everyone
  covisit     item -> next-item transitions (and optional co-occurrence) of the user's recent items
  als         implicit ALS on the binary user x item matrix (128 factors, alpha 20, reg 0.05, 20 iters)
  bpr         implicit BPR on the same matrix
  ease        EASE: closed-form item x item model on the same matrix (l2 100)
  sasrec      SASRec: a causal transformer over the item sequence, full-softmax training
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
stages: encoder (fine-tune on the histories before every label) -> scorers, candidates and features
on each label fold -> LightGBM LambdaRank -> scorers refitted on every interaction -> ARTIFACT.

config file (--config, TOML), every section and key optional:
  [recommender]
  label_folds = 3                # labelled events per user the ranker learns from
  [recommender.candidates]       # source -> how many of its best items become candidates
  als = 100
  covisit = 50
  [recommender.scorers.cooc]     # any scorer by name: {model = registry name, options...}
  model = "covisit"
  cooccurrence_weight = 1.0
  [ranker]
  num_leaves = 31
  learning_rate = 0.05
  [sasrec]
  enabled = true                 # the sequential model (a causal transformer over item ids)
  epochs = 40
  [encoder]
  enabled = true                 # false: no fine-tuned encoder (zero-shot text only)
  checkpoint = "runs/encoder"    # use this run instead of training one
  epochs = 0                     # 0: the projection stage only (the CPU default)

overrides (--set, repeatable): --set ranker.num_leaves=63 --set recommender.label_folds=2

example:
  recsys train --dataset amazon-scientific --data-dir ../shared/data/amazon-scientific \\
      --out artifacts/scientific --evaluate
"""


def _mapping(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for pair in text.split(","):
        canon, sep, theirs = pair.partition("=")
        if not sep or not canon.strip() or not theirs.strip():
            raise ConfigError(f"column mapping {pair!r} must look like canonical=their_column")
        out[canon.strip()] = theirs.strip()
    return out


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (a named dataset, or your own files)")
    g.add_argument("--dataset", choices=["amazon-scientific"], help="a dataset in its published format")
    g.add_argument("--data-dir", type=Path, help="folder of the named dataset")
    g.add_argument("--items", type=Path, help="items file (.csv, .tsv, .parquet, .jsonl)")
    g.add_argument("--interactions", type=Path, help="interactions file (.csv, .tsv, .parquet, .jsonl)")
    g.add_argument(
        "--item-columns",
        metavar="MAP",
        help="rename item columns, canonical=yours, comma-separated (e.g. item_id=sku,title=name)",
    )
    g.add_argument(
        "--interaction-columns",
        metavar="MAP",
        help="rename interaction columns (e.g. user_id=customer,item_id=sku,timestamp=ts)",
    )
    g.add_argument(
        "--unknown-items",
        choices=["error", "drop"],
        default="error",
        help="interactions naming items missing from the items file: fail (default) or drop",
    )
    g.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us"],
        default="s",
        help="unit of numeric epoch timestamps (default: s)",
    )


def load_dataset(args: argparse.Namespace) -> Any:
    from recsys.data import DATASETS, load_files

    if args.dataset:
        if args.items or args.interactions:
            raise ConfigError("give either --dataset or --items/--interactions, not both")
        if args.data_dir is None:
            raise ConfigError(f"--dataset {args.dataset} needs --data-dir (the folder holding its files)")
        return DATASETS[args.dataset](args.data_dir)
    if not (args.items and args.interactions):
        raise ConfigError("no data: give --dataset NAME --data-dir DIR, or --items FILE --interactions FILE")
    return load_files(
        args.items,
        args.interactions,
        item_columns=_mapping(args.item_columns),
        interaction_columns=_mapping(args.interaction_columns),
        unknown_items=args.unknown_items,
        timestamp_unit=args.timestamp_unit,
    )


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
    from pipelines.train import TrainJob, check_sections, run_training

    config = load_toml(args.config) if args.config else {}
    check_sections(config)
    config = apply_overrides(
        {"recommender": {}, "encoder": {}, "sasrec": {}, "ranker": {}, **config}, list(args.set)
    )
    recommender = dict(config["recommender"])
    if config["ranker"]:
        recommender["ranker"] = {**recommender.get("ranker", {}), **config["ranker"]}
    job = TrainJob(
        out=args.out,
        recommender=recommender,
        encoder=config["encoder"],
        sasrec=config["sasrec"],
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


EPILOG_SERVE = """\
endpoints (OpenAPI at /docs and /openapi.json):
  POST /v1/recommendations       {"user_id": "u1", "k": 10, "filters": {...}, "context": ["item", ...]}
  POST /v1/rank                  {"user_id": "u1", "item_ids": ["a", "b", ...]}
  GET  /v1/items/ID/similar?k=10
  PUT  /v1/items/ID              {"title": ..., "category": ..., "text": ...}   (X-API-Key)
  DELETE /v1/items/ID                                                           (X-API-Key)
  POST /v1/events                {"events": [{"user_id", "item_id", "type": "view"}]}  (X-API-Key)
  POST /v1/admin/reload          {"model_dir": DIR} (or send SIGHUP)            (X-API-Key)
  GET  /healthz  /readyz  /metrics

settings (environment; the options below set the first three):
  RECSYS_MODEL_DIR, RECSYS_REDIS_URL (or REDIS_URL; unset: in-process cache), RECSYS_API_KEYS
  (comma-separated; unset: writes refused), RECSYS_CACHE_TTL_S=600, RECSYS_MAX_K=100,
  RECSYS_MAX_CANDIDATES=1000, RECSYS_MAX_CONTEXT=100, RECSYS_MAX_EVENTS=1000,
  RECSYS_MAX_BODY_BYTES=1000000, RECSYS_WITH_REASONS=true, RECSYS_MODEL_THREADS=1

example:
  RECSYS_API_KEYS=change-me recsys serve --model-dir artifacts/scientific --redis-url redis://127.0.0.1:6379/0
  curl -s localhost:8000/v1/recommendations -H 'content-type: application/json' \\
      -d '{"user_id": "ABW8NXS7SV55K", "k": 5}'
"""


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from recsys.artifacts import read_manifest

    if args.model_dir is not None:
        os.environ["RECSYS_MODEL_DIR"] = str(args.model_dir.resolve())
    if args.redis_url is not None:
        os.environ["RECSYS_REDIS_URL"] = args.redis_url
    if args.experiments is not None:
        from recsys.ab.experiments import load_experiments

        load_experiments(args.experiments)  # a bad file fails here, before the workers start
        os.environ["RECSYS_EXPERIMENTS_FILE"] = str(args.experiments.resolve())
    model_dir = os.environ.get("RECSYS_MODEL_DIR")
    if not model_dir:
        raise ConfigError("no model to serve: pass --model-dir DIR or set RECSYS_MODEL_DIR")
    read_manifest(model_dir)  # a missing or foreign folder fails here, before the workers start
    # Each worker computes as many lists at once as it has cores to itself (one thread each).
    os.environ.setdefault("RECSYS_MODEL_CONCURRENCY", str(max(1, (os.cpu_count() or 1) // args.workers)))
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="debug" if args.verbose else "info",
        access_log=args.access_log,
    )
    return 0


EPILOG_SCORE = """\
output (--out DIR): part-NNNNN.parquet (user_id, rank, item_id, score, model_version[, reasons]),
each written atomically, and _job.json; a rerun of the same job skips finished partitions.

engines:
  local   this process, chunk by chunk (memory bounded by a partition)
  ray     a Ray cluster (RAY_ADDRESS) or a local one with --workers; the artifact is shipped to each
          worker once through the object store; the output equals the local engine's

examples:
  recsys score --model-dir artifacts/scientific --users all --k 100 --out runs/lists
  recsys score --model-dir artifacts/scientific --users users.txt --k 20 --out runs/lists \\
      --engine ray --workers 2 --to-redis redis://127.0.0.1:6379/0
"""


def cmd_score(args: argparse.Namespace) -> int:
    from pipelines.score import ScoreRun, run_scoring

    report = run_scoring(
        ScoreRun(
            model_dir=args.model_dir,
            users=args.users,
            k=args.k,
            out=args.out,
            engine=args.engine,
            workers=args.workers,
            partition_size=args.partition_size,
            reasons=args.reasons,
            overwrite=args.overwrite,
            to_redis=args.to_redis,
            redis_prefix=args.redis_prefix,
            ttl_s=args.ttl,
            progress=not args.no_progress,
        )
    )
    for key, value in report.items():
        if key != "job":
            print(f"{key:>20}: {value}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from recsys.atomic import atomic_writer
    from recsys.data.synthetic import synthetic_scale

    dataset = synthetic_scale(
        n_users=args.users, n_items=args.items, n_categories=args.categories, seed=args.seed
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("items", dataset.items), ("interactions", dataset.interactions.drop("seq"))):
        with atomic_writer(args.out / f"{name}.parquet") as fh:
            frame.write_parquet(fh)
    for key, value in dataset.summary().items():
        print(f"{key:>20}: {value}")
    print(f"wrote {args.out}/items.parquet and {args.out}/interactions.parquet")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
    for key, value in dataset.summary().items():
        print(f"{key:>20}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="An LLM-enhanced recommendation engine: "
        "text encoder + collaborative filtering, evaluated by full ranking.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ev = sub.add_parser(
        "evaluate",
        help="fit models and rank the whole catalogue for held-out targets",
        description="Fit each model on the training split and report full-ranking "
        "metrics (history excluded, ties broken by item row).",
        epilog=EPILOG_EVALUATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_arguments(ev)
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
    _add_data_arguments(te)
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
    _add_data_arguments(tr)
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

    sc = sub.add_parser(
        "score",
        help="batch top-K for many users to Parquet (and Redis), locally or on Ray",
        description="Score users in chunks through the Recommender and write partitioned Parquet.",
        epilog=EPILOG_SCORE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sc.add_argument("--model-dir", type=Path, required=True, metavar="DIR", help="artifact folder")
    sc.add_argument("--users", default="all", help="all, or a file of user ids (.txt, .csv, .parquet)")
    sc.add_argument("--k", type=int, default=100, help="list length (default 100)")
    sc.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    sc.add_argument("--engine", choices=["local", "ray"], default="local")
    sc.add_argument("--workers", type=int, default=2, help="Ray workers on a local Ray (default 2)")
    sc.add_argument("--partition-size", type=int, default=5000, help="users per Parquet file")
    sc.add_argument("--reasons", action="store_true", help="also write each item's reasons")
    sc.add_argument("--overwrite", action="store_true", help="replace another job's output in --out")
    sc.add_argument("--to-redis", metavar="URL", help="also write the lists to the serving cache")
    sc.add_argument("--redis-prefix", default="recsys", help="the service's RECSYS_KEY_PREFIX")
    sc.add_argument("--ttl", type=int, default=86400, help="seconds the exported lists live (default 1 day)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    sc.set_defaults(func=cmd_score)

    sy = sub.add_parser(
        "synth",
        help="write a synthetic shop of any size (items with text, interactions) for scale runs",
        description="Users with hidden category interests, Zipf popularity and successor chains; "
        "the same shop as the test suite's, generated for millions of users in seconds.",
        epilog="example:\n  recsys synth --users 1000000 --items 5000 --out runs/synth-1m\n"
        "  recsys train --items runs/synth-1m/items.parquet --interactions runs/synth-1m/interactions.parquet"
        " --out artifacts/synth-1m",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sy.add_argument("--users", type=int, default=100_000)
    sy.add_argument("--items", type=int, default=5_000)
    sy.add_argument("--categories", type=int, default=12)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--out", type=Path, required=True, metavar="DIR")
    sy.set_defaults(func=cmd_synth)

    se = sub.add_parser(
        "serve",
        help="serve an artifact over HTTP: recommendations, rank, similar, items, events",
        description="Run the FastAPI service on an artifact from `recsys train`, with a Redis cache "
        "(or an in-process one when no Redis URL is set).",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    se.add_argument("--model-dir", type=Path, metavar="DIR", help="artifact folder (or RECSYS_MODEL_DIR)")
    se.add_argument("--redis-url", help="redis://host:port/db (or RECSYS_REDIS_URL / REDIS_URL)")
    se.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    se.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    se.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    se.add_argument("--access-log", action="store_true", help="log every request")
    se.add_argument(
        "--experiments",
        type=Path,
        metavar="TOML",
        help="A/B experiments to run (or RECSYS_EXPERIMENTS_FILE); see `recsys ab --help`",
    )
    se.set_defaults(func=cmd_serve)

    from recsys.cli_ab import add_ab_parser

    add_ab_parser(sub)

    va = sub.add_parser("validate", help="check data files against the canonical schema and summarise them")
    _add_data_arguments(va)
    va.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (DataError, ArtifactError) as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
