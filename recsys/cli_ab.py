"""``recsys ab``: check an experiments file, assign users, drain the logs, report, simulate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

EPILOG_AB = """\
an experiment, end to end (Redis at 127.0.0.1:6379):
  recsys ab check experiments.toml --model-dir artifacts/scientific
  RECSYS_API_KEYS=secret recsys serve --model-dir artifacts/scientific \\
      --redis-url redis://127.0.0.1:6379/0 --experiments experiments.toml
  # ... traffic: your shop, or `recsys ab simulate` ...
  recsys ab drain --redis-url redis://127.0.0.1:6379/0 --out runs/ab-logs
  recsys ab report hybrid-vs-als --experiments experiments.toml --logs runs/ab-logs \\
      --html runs/ab-report.html --json runs/ab-report.json

without Redis the service appends the records to RECSYS_AB_LOG_DIR (default ./ab-log); drain that
folder with `recsys ab drain --log-dir ab-log --out runs/ab-logs`.
"""


def _load(path: Path) -> Any:
    from recsys.ab.experiments import load_experiments

    return load_experiments(path)


def cmd_check(args: argparse.Namespace) -> int:
    experiments = _load(args.experiments)
    if args.model_dir is not None:
        from recsys.artifacts import read_manifest

        manifest = read_manifest(args.model_dir)
        scorers = manifest.get("config", {}).get("scorers", {})
        experiments.check_rankings(scorers, str(args.model_dir))
    for e in experiments:
        print(f"{e.name}: salt {e.salt!r}, traffic {e.traffic:.0%}, control {e.control}, primary {e.primary}")
        for v in e.variants:
            print(f"  {v.name:<16} {v.weight:>6.1%}  {v.label}")
    print(f"{len(experiments)} experiment(s): ok")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    experiments = _load(args.experiments)
    ids = list(args.user_ids)
    if args.users_file is not None:
        ids += [line.strip() for line in args.users_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ConfigError("give user ids, or --users-file")
    for user_id in ids:
        got = experiments.assign(user_id)
        print(f"{user_id}\t{got[0].name}\t{got[1].name}" if got else f"{user_id}\t-\t-")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    from pipelines.ab_drain import drain_files, drain_redis

    if (args.redis_url is None) == (args.log_dir is None):
        raise ConfigError("give one of --redis-url and --log-dir")
    if args.redis_url is not None:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        stats = drain_redis(client, args.out, prefix=args.prefix, batch=args.batch, progress=True)
    else:
        stats = drain_files(args.log_dir, args.out, batch=args.batch)
    for stream in stats.written:
        print(f"{stream}: {stats.written[stream]} written, {stats.skipped[stream]} already in {args.out}")
    if stats.rejected:
        print(f"{stats.rejected} records were not JSON: kept in {args.out}/rejected")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.ab_drain import read_table
    from recsys.ab.html import render_html
    from recsys.ab.report import analyse, render_text, strict_json
    from recsys.atomic import write_text

    experiment = _load(args.experiments).get(args.experiment)
    if not args.logs.is_dir():
        raise ConfigError(
            f"no drained logs in {args.logs}: run `recsys ab drain ... --out {args.logs}` first"
        )
    report = analyse(experiment, read_table(args.logs, "exposures"), read_table(args.logs, "outcomes"))
    print(render_text(report))
    if args.json is not None:
        write_text(args.json, json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
        print(f"\nwrote {args.json}")
    if args.html is not None:
        write_text(args.html, render_html(report))
        print(f"wrote {args.html}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from pipelines.ab_simulate import SimulationConfig, held_out, pre_period_records, simulate
    from recsys.cli import load_dataset

    cfg = SimulationConfig(
        api=args.api,
        api_key=args.api_key,
        users=args.users,
        k=args.k,
        concurrency=args.concurrency,
        seed=args.seed,
        examine_decay=args.examine_decay,
        noise_click=args.noise_click,
        buy_given_click=args.buy_given_click,
    )
    users = held_out(load_dataset(args), cfg.users, cfg.seed)
    if args.pre_period_redis or args.pre_period_log_dir:
        from recsys.ab.log import FileLog, RedisLog

        records = pre_period_records(users, before=time.time())
        if args.pre_period_redis:
            import redis

            sink: Any = RedisLog(redis.Redis.from_url(args.pre_period_redis), args.prefix)
        else:
            sink = FileLog(args.pre_period_log_dir)
        sink.append("outcomes", records)
        sink.close()
        print(
            f"pre-period: {len(records)} earlier purchases of {users.height} users written to the outcome log"
        )
    result = asyncio.run(simulate(users, cfg, progress=not args.no_progress))
    print(json.dumps(result, indent=2))
    if args.output is not None:
        from recsys.atomic import write_text

        write_text(args.output, json.dumps(result, indent=2) + "\n")
    return 0


def add_ab_parser(sub: Any) -> None:
    from recsys.cli import add_data_arguments

    ab = sub.add_parser(
        "ab",
        help="A/B experiments: check, assign, drain the logs, report, simulate",
        description="A/B experiments: deterministic assignment, exposure and outcome logs, and the analysis.",
        epilog=EPILOG_AB,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ab_sub = ab.add_subparsers(dest="ab_command", metavar="ACTION")

    ch = ab_sub.add_parser(
        "check", help="validate an experiments file (and its rankings against an artifact)"
    )
    ch.add_argument("experiments", type=Path, metavar="TOML")
    ch.add_argument("--model-dir", type=Path, metavar="DIR", help="also check rankings name its scorers")
    ch.set_defaults(func=cmd_check)

    asg = ab_sub.add_parser("assign", help="print the experiment and variant of user ids")
    asg.add_argument("user_ids", nargs="*", metavar="USER_ID")
    asg.add_argument("--experiments", type=Path, required=True, metavar="TOML")
    asg.add_argument("--users-file", type=Path, help="one user id per line")
    asg.set_defaults(func=cmd_assign)

    dr = ab_sub.add_parser(
        "drain",
        help="move the exposure and outcome logs into partitioned Parquet (safe to rerun)",
        description="Redis Streams (consumer group, acknowledged after each atomic write) or the "
        "service's JSON-lines files into OUT/{exposures,outcomes}/date=YYYY-MM-DD/part-*.parquet. "
        "Interrupted and rerun, it loses and duplicates nothing.",
    )
    dr.add_argument("--redis-url", help="drain the streams of this Redis")
    dr.add_argument("--log-dir", type=Path, help="drain the files the service wrote without Redis")
    dr.add_argument("--out", type=Path, required=True, help="output folder")
    dr.add_argument("--prefix", default="recsys", help="key prefix (RECSYS_KEY_PREFIX of the service)")
    dr.add_argument("--batch", type=int, default=5000, help="records per part at most")
    dr.set_defaults(func=cmd_drain)

    rp = ab_sub.add_parser(
        "report",
        help="per-variant metrics, lifts with 95%% intervals, SRM and guardrail checks",
        description="Users, exposures, CTR, conversion, revenue per user per variant; absolute and "
        "relative lift with 95%% intervals (Welch; delta method for CTR), p-values, the sample-ratio "
        "check, CUPED when a pre-period exists, guardrails. Prints a table; --json and --html write files.",
    )
    rp.add_argument("experiment", metavar="EXPERIMENT", help="its name in the experiments file")
    rp.add_argument("--experiments", type=Path, required=True, metavar="TOML")
    rp.add_argument("--logs", type=Path, required=True, metavar="DIR", help="the output of `recsys ab drain`")
    rp.add_argument("--json", type=Path, help="write the report as JSON")
    rp.add_argument("--html", type=Path, help="write a self-contained HTML report with plots")
    rp.set_defaults(func=cmd_report)

    si = ab_sub.add_parser(
        "simulate",
        help="send held-out users' traffic through the running API, clicks from a position-biased model",
        description="Held-out users (each user's last event hidden from the served model: serve the "
        "artifact of `recsys train --evaluate --holdout-artifact DIR`) ask the running service for k "
        "items. They examine position p with probability 1/(p+1)^decay and click an examined item if it "
        "is the one they really went to next (other items: --noise-click); a click on it becomes a "
        "purchase with --buy-given-click, at a simulated fixed price per item. Clicks and purchases go "
        "to /v1/events with the response's request id.",
    )
    add_data_arguments(si)
    si.add_argument("--api", default="http://127.0.0.1:8000", help="the service's base URL")
    si.add_argument("--api-key", help="a key of RECSYS_API_KEYS (events need one)")
    si.add_argument("--users", type=int, default=0, help="held-out users to simulate (default 0: all)")
    si.add_argument("--k", type=int, default=10, help="list length (default 10)")
    si.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    si.add_argument("--seed", type=int, default=0)
    si.add_argument("--examine-decay", type=float, default=1.0, help="P(examine p) = 1/(p+1)^decay")
    si.add_argument("--noise-click", type=float, default=0.005, help="P(click) of an examined other item")
    si.add_argument(
        "--buy-given-click", type=float, default=0.5, help="P(purchase) after clicking the next item"
    )
    si.add_argument(
        "--pre-period-redis", metavar="URL", help="write the users' earlier purchases to this Redis"
    )
    si.add_argument("--pre-period-log-dir", type=Path, help="... or to this log folder (no Redis)")
    si.add_argument("--prefix", default="recsys", help="key prefix of the service")
    si.add_argument("--output", type=Path, help="write the client-side summary as JSON")
    si.add_argument("--no-progress", action="store_true")
    si.set_defaults(func=cmd_simulate)

    def usage(args: argparse.Namespace) -> int:
        ab.print_help()
        return 2

    ab.set_defaults(func=usage)
