"""Load test of the HTTP service with wrk: cached and uncached recommendations, beside a ceiling.

    .venv/bin/python benchmarks/serve_load.py --model-dir artifacts/scientific \
        [--redis-url redis://127.0.0.1:6379/0] [--duration 20] [--connections 4]

Starts `recsys serve` (1 worker) on the artifact and, as the ceiling, a minimal FastAPI app that
parses the same body and returns one value read from Redis (``benchmarks/load/ceiling_app.py``),
both under the same uvicorn (uvloop, httptools, no access log). wrk (Debian's ``wrk``; one thread,
``--connections`` connections) drives them in turn:

- uncached, 1 connection: every request a different user, cache empty: the full pipeline's latency;
- uncached, N connections: the same under load (queueing included);
- cached, N connections: a pool of users whose lists are in Redis;
- ceiling, N connections; the cached and ceiling runs alternate ``--rounds`` times.

Cache hits and misses come from the service's own /metrics, so each phase states what it measured.
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median

import polars as pl
import redis
from _machine import machine

from recsys.atomic import write_text
from serving.local_redis import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "load" / "users.lua"


def serve_command(model_dir: Path | str, port: int, *options: str) -> list[str]:
    """The argv of ``recsys serve`` on ``model_dir`` at ``port`` (from this checkout's venv)."""
    return [
        str(ROOT / ".venv" / "bin" / "recsys"),
        "serve",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
        *options,
    ]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for result in ("hit", "miss"):
        m = re.search(
            rf'recsys_cache_total{{endpoint="recommendations",result="{result}"}} ([0-9.e+]+)', text
        )
        out[result] = float(m.group(1)) if m else 0.0
    return out


def wrk(port: int, users: Path, duration: int, connections: int, k: int, start: int = 0) -> dict[str, float]:
    env = {**os.environ, "USERS_FILE": str(users), "K": str(k), "START": str(start)}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(LUA)]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    seconds = r["duration_us"] / 1e6
    return {
        "requests": r["requests"],
        "requests_per_s": round(r["requests"] / seconds, 1),
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "p999_ms": r["p999_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["socket_errors"] + r["non_2xx"],
    }


def phase(
    port: int,
    name: str,
    users: Path,
    duration: int,
    connections: int,
    k: int,
    start: int = 0,
    ours: bool = True,
) -> dict:
    before = metrics(port) if ours else {}
    result = wrk(port, users, duration, connections, k, start)
    hits = ""
    if ours:
        after = metrics(port)
        n_hit, n_miss = after["hit"] - before["hit"], after["miss"] - before["miss"]
        result["cache_hit_share"] = round(n_hit / max(n_hit + n_miss, 1), 4)
        hits = f"  hits {result['cache_hit_share']:.0%}"
    result["connections"] = connections
    print(
        f"{name:<28} {result['requests_per_s']:>9.1f} req/s  p50 {result['p50_ms']:>7.2f} ms  "
        f"p99 {result['p99_ms']:>7.2f} ms{hits}  errors {result['errors']}",
        flush=True,
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="cached/ceiling alternations")
    ap.add_argument("--pool", type=int, default=1000, help="users in the cached pool")
    ap.add_argument("--model-threads", type=int, default=1, help="RECSYS_MODEL_THREADS of the service")
    ap.add_argument(
        "--model-concurrency",
        type=int,
        default=None,
        help="RECSYS_MODEL_CONCURRENCY (default: the service's own, 1)",
    )
    ap.add_argument("--skip-uncached", action="store_true", help="only the cached and ceiling runs")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "serve_load.json")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    r = redis.Redis.from_url(args.redis_url)
    r.ping()

    users = pl.read_parquet(args.model_dir / "data" / "users.parquet")["user_id"].to_list()
    random.Random(0).shuffle(users)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    all_users, pool = tmp / "all.txt", tmp / "pool.txt"
    all_users.write_text("\n".join(users) + "\n")
    pool.write_text("\n".join(users[: args.pool]) + "\n")

    prefix = f"recsys-bench-{os.getpid()}"
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECSYS_KEY_PREFIX": prefix,
        "RECSYS_CACHE_TTL_S": "3600",
        "RECSYS_REDIS_URL": args.redis_url,
        "RECSYS_MODEL_THREADS": str(args.model_threads),
    }
    if args.model_concurrency is not None:
        env["RECSYS_MODEL_CONCURRENCY"] = str(args.model_concurrency)
    concurrency = args.model_concurrency or 1  # the service's default
    ours_port, ceiling_port = free_port(), free_port()
    uvicorn_flags = ["--log-level", "warning", "--no-access-log", "--workers", "1"]
    ours = subprocess.Popen(serve_command(args.model_dir, ours_port), env=env, stderr=subprocess.DEVNULL)
    ceiling = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ceiling_app:app",
            "--app-dir",
            str(HERE / "load"),
            "--port",
            str(ceiling_port),
            *uvicorn_flags,
        ],
        env=env,
    )
    results: dict = {}
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours)
        wait_ready(f"http://127.0.0.1:{ceiling_port}/docs", ceiling)
        body = json.dumps({"user_id": users[0], "k": 10}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{ours_port}/v1/recommendations", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req) as resp:
            sample = json.loads(resp.read())
        # The ceiling returns a payload of the same size as ours.
        r.hset("recsys-bench:ceiling", "k=10", json.dumps(sample))
        print(f"service on :{ours_port}, ceiling on :{ceiling_port}; {len(users)} users, pool {args.pool}")

        if not args.skip_uncached:
            results["uncached_1_connection"] = phase(
                ours_port, "uncached, 1 connection", all_users, args.duration, 1, 10, 1
            )
            results["uncached"] = phase(
                ours_port,
                f"uncached, {args.connections} connections",
                all_users,
                args.duration,
                args.connections,
                12,
                1,
            )
        for _ in range(30):  # until every pool user's list is in the cache
            if phase(ours_port, "warm the pool", pool, 10, args.connections, 10)["cache_hit_share"] >= 0.999:
                break
        cached, ceil = [], []
        for i in range(args.rounds):
            ceil.append(
                phase(
                    ceiling_port,
                    f"ceiling (round {i + 1})",
                    pool,
                    args.duration,
                    args.connections,
                    10,
                    ours=False,
                )
            )
            cached.append(
                phase(ours_port, f"cached (round {i + 1})", pool, args.duration, args.connections, 10)
            )
        results["cached_rounds"], results["ceiling_rounds"] = cached, ceil
        ours_rps = median(c["requests_per_s"] for c in cached)
        ceiling_rps = median(c["requests_per_s"] for c in ceil)
        results["cached"] = {
            "requests_per_s": ours_rps,
            "p99_ms": median(c["p99_ms"] for c in cached),
            "share_of_ceiling": round(ours_rps / ceiling_rps, 3),
        }
        results["ceiling"] = {"requests_per_s": ceiling_rps, "p99_ms": median(c["p99_ms"] for c in ceil)}
        print(
            f"\ncached: {ours_rps:.0f} req/s, {ours_rps / ceiling_rps:.0%} of the ceiling ({ceiling_rps:.0f})"
        )
    finally:
        for proc in (ours, ceiling):
            proc.send_signal(signal.SIGINT)
        for proc in (ours, ceiling):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for key in r.scan_iter(f"{prefix}:*", count=1000):
            r.delete(key)
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "setup": {
            "service": "recsys serve, 1 uvicorn worker (uvloop, httptools), Redis cache",
            "model_threads": args.model_threads,
            "model_concurrency": concurrency,
            "load": f"wrk -t1 -c{args.connections} -d{args.duration}s (1 connection for the latency run)",
            "artifact": str(args.model_dir),
        },
        "targets": {
            "cached_p99_ms": 5,
            "cached_requests_per_s": 3000,
            "uncached_p99_ms": 30,
            "share_of_ceiling": 0.7,
        },
        **results,
    }
    write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
