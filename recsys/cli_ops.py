"""``recsys serve``, ``recsys score`` and ``recsys synth``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

log = logging.getLogger("recsys")

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
  RECSYS_MAX_BODY_BYTES=1000000, RECSYS_WITH_REASONS=true, RECSYS_MODEL_THREADS=1,
  RECSYS_MODEL_CONCURRENCY=1, RECSYS_BATCH_WAIT_MS=8 (how long a pass waits for its batch to fill
  when more requests are expected; 0: never)

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


def add_ops_parsers(sub: Any) -> None:
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
