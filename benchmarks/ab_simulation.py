"""The A/B simulation on Amazon Scientific: hybrid against ALS alone, through the running service.

    .venv/bin/python benchmarks/ab_simulation.py --model-dir artifacts/scientific-holdout \
        [--redis-url redis://127.0.0.1:6379/0] [--users 0] [--concurrency 2]

The artifact must be the test split's recommender (``recsys train --evaluate --holdout-artifact
DIR``): each user's last event is hidden from it, and is the item the simulated user goes to next.

1. starts `recsys serve` (1 worker, Redis, the experiments of ``benchmarks/ab/scientific.toml``);
2. writes every simulated user's earlier events to the outcome stream as the pre-period;
3. ``recsys ab simulate``: each held-out user asks for 10 items once; position-biased clicks on their
   real next item; clicks and purchases back through ``/v1/events``;
4. ``recsys ab drain`` into runs/ab-simulation/logs, run twice (the second must write nothing);
5. ``recsys ab report``: the terminal table, JSON (benchmarks/results/ab_simulation.json), the HTML
   report (runs/ab-simulation/report.html) and its screenshot (benchmarks/results/ab_report.png,
   headless Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis
from _machine import machine
from serve_load import free_port, serve_command, wait_ready

from pipelines.ab_drain import drain_redis, read_table
from pipelines.ab_simulate import SimulationConfig, held_out, pre_period_records, simulate
from recsys.ab.experiments import load_experiments
from recsys.ab.html import render_html
from recsys.ab.log import RedisLog, stream_key
from recsys.ab.report import analyse, render_text, strict_json
from recsys.atomic import write_text
from recsys.data import load_amazon_scientific

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "ab-simulation-key"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True, help="the holdout artifact")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "amazon-scientific")
    ap.add_argument("--experiments", type=Path, default=HERE / "ab" / "scientific.toml")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--users", type=int, default=0, help="held-out users (0: all 8,442)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "ab-simulation")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "ab_simulation.json")
    ap.add_argument("--screenshot", type=Path, default=HERE / "results" / "ab_report.png")
    ap.add_argument(
        "--report-only", action="store_true", help="report again on the drained logs of the last run"
    )
    args = ap.parse_args()
    if args.report_only:
        return report_again(args)

    experiment = load_experiments(args.experiments).get("hybrid-vs-als")
    client = redis.Redis.from_url(args.redis_url)
    client.ping()
    prefix = f"ab-sim-{os.getpid()}"
    if args.work.exists():
        shutil.rmtree(args.work)
    logs = args.work / "logs"

    users = held_out(load_amazon_scientific(args.data_dir), args.users, seed=0)
    cfg = SimulationConfig(api_key=KEY, concurrency=args.concurrency, seed=0)

    port = free_port()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECSYS_KEY_PREFIX": prefix,
        "RECSYS_API_KEYS": KEY,
        "RECSYS_CACHE_TTL_S": "3600",
    }
    cmd = serve_command(
        args.model_dir, port, "--redis-url", args.redis_url, "--experiments", str(args.experiments)
    )
    service = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", service)
        RedisLog(client, prefix).append("outcomes", pre_period_records(users, before=time.time()))
        sim = asyncio.run(
            simulate(users, SimulationConfig(**{**cfg.__dict__, "api": f"http://127.0.0.1:{port}"}))
        )
        time.sleep(1.0)  # the service writes its buffered records every 0.2 s
    finally:
        service.terminate()
        service.wait(timeout=60)
    t0 = time.perf_counter()
    first = drain_redis(client, logs, prefix=prefix)
    drain_seconds = time.perf_counter() - t0
    second = drain_redis(client, logs, prefix=prefix)
    left = {s: client.xlen(stream_key(prefix, s)) for s in ("exposures", "outcomes")}
    client.delete(*(stream_key(prefix, s) for s in ("exposures", "outcomes")))

    exposures, outcomes = read_table(logs, "exposures"), read_table(logs, "outcomes")
    report = analyse(experiment, exposures, outcomes)
    print(render_text(report))
    html = args.work / "report.html"
    write_text(html, render_html(report))
    browser = screenshot(html, args.screenshot)
    result = {
        "machine": machine(),
        "command": " ".join(["benchmarks/ab_simulation.py", *sys.argv[1:]]),
        "simulation": sim,
        "drain": {
            "first": {"written": first.written, "seconds": round(drain_seconds, 2)},
            "second": {"written": second.written, "skipped": second.skipped},
            "left_in_streams": left,
            "rows": {"exposures": exposures.height, "outcomes": outcomes.height},
            "duplicate_entry_ids": exposures.height - exposures["entry_id"].n_unique(),
        },
        "report": strict_json(report),
    }
    write_text(args.output, json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {args.output}, {html}" + (f", {args.screenshot}" if browser else ""))
    return 0


def report_again(args: argparse.Namespace) -> int:
    """The report, JSON and screenshot again from ``--work``'s drained logs (no new traffic)."""
    experiment = load_experiments(args.experiments).get("hybrid-vs-als")
    logs = args.work / "logs"
    report = analyse(experiment, read_table(logs, "exposures"), read_table(logs, "outcomes"))
    print(render_text(report))
    html = args.work / "report.html"
    write_text(html, render_html(report))
    screenshot(html, args.screenshot)
    result = json.loads(args.output.read_text())
    result["report"] = strict_json(report)
    write_text(args.output, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


def screenshot(html: Path, png: Path) -> bool:
    browser = shutil.which("chromium")
    if browser:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1100,2700",
                f"--screenshot={png}",
                html.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return browser is not None


if __name__ == "__main__":
    sys.exit(main())
