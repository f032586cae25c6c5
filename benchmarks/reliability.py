"""Reliability under faults and over time: Redis outages during load, and a soak run.

    .venv/bin/python benchmarks/reliability.py faults --model-dir artifacts/scientific [--seconds 60]
    .venv/bin/python benchmarks/reliability.py soak --model-dir artifacts/scientific [--seconds 600]

Both start `recsys serve` (1 worker, an A/B experiment so exposures and outcomes are logged too)
and drive mixed traffic from one async client: recommendations for users of a pool (some cached),
rank calls, events, and item updates.

**faults**: a private redis-server (append-only file, fsync always, so its own restarts lose
nothing) is stopped and started twice during the run. Reads must all be 2xx; an event or item
change is either accepted (2xx) or refused with 503 and Retry-After. Afterwards every accepted
event must be in the user's recent history in Redis, every accepted event an outcome record and
every served list an exposure record: anything missing is counted as lost.

**soak**: the given Redis, ``--seconds`` of traffic; per minute: requests, errors, p50 and p99;
the service's resident memory every 5 seconds, and its growth after a two-minute warm-up.

Writes benchmarks/results/{faults,soak}.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import redis
from _machine import machine
from serve_load import free_port, serve_command, wait_ready

from recsys.ab.log import stream_key
from recsys.atomic import write_text
from recsys.cache_keys import recent_key
from serving.local_redis import RedisProcess

HERE = Path(__file__).resolve().parent
KEY = "reliability-key"
READS = ("recommendations", "rank")
EXPERIMENTS = """
[[experiments]]
name = "reliability"
salt = "reliability-1"
  [[experiments.variants]]
  name = "als"
  weight = 0.5
  ranking = "als"
  [[experiments.variants]]
  name = "hybrid"
  weight = 0.5
"""


class Traffic:
    """Mixed traffic; remembers what the service accepted so it can be checked afterwards."""

    def __init__(
        self, base: str, users: list[str], items: list[str], put_every_s: float, seed: int = 0
    ) -> None:
        self.base, self.users, self.items = base, users, items
        self.put_every_s = put_every_s
        self.rng = random.Random(seed)
        self.records: list[tuple[float, str, int, float]] = []  # (t, op, status, seconds)
        self.accepted_events: list[tuple[str, str]] = []  # (user, item)
        self.served_lists = 0
        self.refused: dict[str, int] = defaultdict(int)
        self.retry_after_missing = 0
        self._next_put = 0.0
        self._event_no = 0

    async def one(self, client: httpx.AsyncClient, t0: float) -> None:
        now = time.monotonic() - t0
        roll = self.rng.random()
        if now >= self._next_put and self.put_every_s > 0:
            self._next_put = now + self.put_every_s
            op, item = "put_item", f"SOAK-{self.rng.randrange(20)}"
            req = client.put(
                f"/v1/items/{item}",
                json={"title": f"soak item {item} v{self.rng.random():.4f}"},
                headers={"X-API-Key": KEY},
            )
        elif roll < 0.6:
            op = "recommendations"
            req = client.post("/v1/recommendations", json={"user_id": self.rng.choice(self.users), "k": 10})
        elif roll < 0.75:
            op = "rank"
            req = client.post(
                "/v1/rank",
                json={"user_id": self.rng.choice(self.users), "item_ids": self.rng.sample(self.items, 20)},
            )
        else:
            op = "events"
            self._event_no += 1
            user = f"rel-user-{self._event_no}"  # one user per event: each can be found afterwards
            item = self.rng.choice(self.items)
            body = {"events": [{"user_id": user, "item_id": item, "type": "click"}]}
            req = client.post("/v1/events", json=body, headers={"X-API-Key": KEY})
        start = time.perf_counter()
        try:
            r = await req
            status = r.status_code
        except httpx.HTTPError:
            status, r = 0, None
        self.records.append((now, op, status, time.perf_counter() - start))
        if r is None:
            return
        if op == "events" and status == 200:
            self.accepted_events.append((user, item))
        if op == "recommendations" and status == 200:
            self.served_lists += 1
        if status == 503:
            self.refused[op] += 1
            self.retry_after_missing += "retry-after" not in r.headers

    async def run(self, seconds: float, concurrency: int, on_tick=None) -> None:
        t0 = time.monotonic()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=self.base, timeout=30, limits=limits) as client:

            async def worker() -> None:
                while time.monotonic() - t0 < seconds:
                    await self.one(client, t0)

            async def ticker() -> None:
                while time.monotonic() - t0 < seconds:
                    await asyncio.sleep(1.0)
                    if on_tick is not None:
                        await asyncio.to_thread(on_tick, time.monotonic() - t0)

            await asyncio.gather(*(worker() for _ in range(concurrency)), ticker())

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.records, schema=["t", "op", "status", "seconds"], orient="row")


def start_service(
    model_dir: Path, redis_url: str, tmp: Path, prefix: str
) -> tuple[subprocess.Popen[bytes], str]:
    experiments = tmp / "experiments.toml"
    experiments.write_text(EXPERIMENTS)
    port = free_port()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECSYS_API_KEYS": KEY,
        "RECSYS_KEY_PREFIX": prefix,
        "RECSYS_REDIS_URL": redis_url,
        "RECSYS_CACHE_TTL_S": "3600",
    }
    proc = subprocess.Popen(
        serve_command(model_dir, port, "--experiments", str(experiments)), env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/readyz", proc)
    return proc, base


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def summary_by_op(df: pl.DataFrame) -> dict:
    out = {}
    for (op,), g in df.group_by("op"):
        ms = g["seconds"].to_numpy() * 1000
        out[str(op)] = {
            "requests": g.height,
            "2xx": int(((g["status"] >= 200) & (g["status"] < 300)).sum()),
            "503": int((g["status"] == 503).sum()),
            "other": int(((g["status"] < 200) | (g["status"] >= 300)).sum() - (g["status"] == 503).sum()),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
        }
    return out


def load_pool(model_dir: Path) -> tuple[list[str], list[str]]:
    users = pl.read_parquet(model_dir / "data" / "users.parquet")["user_id"].to_list()
    items = pl.read_parquet(model_dir / "data" / "items.parquet")["item_id"].to_list()
    random.Random(0).shuffle(users)
    return users[:2000], items


def faults(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    server = RedisProcess(tmp, durable=True)
    server.start()
    prefix = f"faults-{os.getpid()}"
    proc, base = start_service(args.model_dir, server.url, tmp, prefix)
    users, items = load_pool(args.model_dir)
    traffic = Traffic(base, users, items, put_every_s=2.0)
    s = args.seconds
    schedule = [(0.25 * s, "stop"), (0.42 * s, "start"), (0.67 * s, "stop"), (0.80 * s, "start")]
    injected: list[dict] = []

    def on_tick(t: float) -> None:
        while schedule and t >= schedule[0][0]:
            _, action = schedule.pop(0)
            (server.stop if action == "stop" else server.start)()
            injected.append({"t": round(t, 1), "redis": action})

    try:
        asyncio.run(traffic.run(s, args.connections, on_tick))
        if server.proc is None:
            server.start()
        # One more request reconnects the worker, which then writes what it kept during the outage.
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/readyz").json()["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGINT)  # shutdown flushes the experiment records
        proc.wait(timeout=60)
    r = redis.Redis.from_url(server.url)
    lost_recent = sum(
        1
        for user, item in traffic.accepted_events
        if item.encode() not in r.lrange(recent_key(prefix, user), 0, -1)
    )
    outcomes = r.xlen(stream_key(prefix, "outcomes"))
    exposures = r.xlen(stream_key(prefix, "exposures"))
    server.stop()
    df = traffic.frame()
    reads = df.filter(pl.col("op").is_in(READS))
    stops = [f["t"] for f in injected if f["redis"] == "stop"]
    starts = [f["t"] for f in injected if f["redis"] == "start"]
    outages = [
        {"from_s": a, "to_s": b, "by_op": summary_by_op(df.filter((pl.col("t") >= a) & (pl.col("t") < b)))}
        for a, b in zip(stops, starts, strict=False)
    ]
    return {
        "machine": machine(),
        "command": "benchmarks/reliability.py " + " ".join(sys.argv[1:]),
        "seconds": s,
        "connections": args.connections,
        "faults_injected": injected,
        "during_each_outage": outages,
        "requests": df.height,
        "by_op": summary_by_op(df),
        "reads_non_2xx": int(((reads["status"] < 200) | (reads["status"] >= 300)).sum()),
        "writes_refused_503": dict(traffic.refused),
        "refusals_without_retry_after": traffic.retry_after_missing,
        "events_accepted": len(traffic.accepted_events),
        "events_lost_from_recent_history": lost_recent,
        "outcome_records": {
            "expected": len(traffic.accepted_events),
            "in_stream": outcomes,
            "lost": len(traffic.accepted_events) - outcomes,
        },
        "exposure_records": {
            "expected": traffic.served_lists,
            "in_stream": exposures,
            "lost": traffic.served_lists - exposures,
        },
    }


def soak(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    prefix = f"soak-{os.getpid()}"
    proc, base = start_service(args.model_dir, args.redis_url, tmp, prefix)
    users, items = load_pool(args.model_dir)
    traffic = Traffic(base, users, items, put_every_s=5.0)
    memory: list[tuple[float, float]] = []

    def on_tick(t: float) -> None:
        if int(t) % 5 == 0:
            memory.append((round(t, 1), rss_mb(proc.pid)))

    try:
        asyncio.run(traffic.run(args.seconds, args.connections, on_tick))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    r = redis.Redis.from_url(args.redis_url)
    for key in r.scan_iter(f"{prefix}:*"):
        r.delete(key)
    df = traffic.frame().with_columns(minute=(pl.col("t") // 60).cast(pl.Int64))
    minutes = []
    for (m,), g in sorted(df.group_by("minute"), key=lambda x: x[0][0]):
        ms = g["seconds"].to_numpy() * 1000
        minutes.append(
            {
                "minute": int(m),
                "requests": g.height,
                "errors": int(((g["status"] < 200) | (g["status"] >= 300)).sum()),
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
            }
        )
    warm = [mb for t, mb in memory if t >= args.warmup]
    growth = (warm[-1] - warm[0]) / warm[0] if len(warm) > 1 else float("nan")
    return {
        "machine": machine(),
        "command": "benchmarks/reliability.py " + " ".join(sys.argv[1:]),
        "seconds": args.seconds,
        "connections": args.connections,
        "requests": df.height,
        "errors": int(((df["status"] < 200) | (df["status"] >= 300)).sum()),
        "by_op": summary_by_op(df),
        "per_minute": minutes,
        "rss_mb": {
            "samples": memory,
            "after_warmup": warm[0] if warm else None,
            "end": warm[-1] if warm else None,
            "max": max(mb for _, mb in memory) if memory else None,
            "growth_after_warmup": round(growth, 4),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["faults", "soak"])
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="soak: the Redis to use")
    ap.add_argument("--seconds", type=float, default=None, help="faults: 60; soak: 600")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=120.0, help="soak: seconds before memory is compared")
    args = ap.parse_args()
    args.seconds = args.seconds or (60.0 if args.mode == "faults" else 600.0)
    result = faults(args) if args.mode == "faults" else soak(args)
    out = HERE / "results" / f"{args.mode}.json"
    write_text(out, json.dumps(result, indent=2) + "\n")
    shown = {k: v for k, v in result.items() if k not in ("machine", "per_minute", "rss_mb")}
    print(json.dumps(shown, indent=2))
    if args.mode == "soak":
        print(
            json.dumps(
                {
                    "per_minute": result["per_minute"],
                    "rss": {k: v for k, v in result["rss_mb"].items() if k != "samples"},
                },
                indent=2,
            )
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
