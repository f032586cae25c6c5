"""Uncached recommendations under several values of one setting side by side, with wrk.

    .venv/bin/python benchmarks/serve_concurrency.py --model-dir artifacts/scientific [--values 1,2]
    .venv/bin/python benchmarks/serve_concurrency.py --model-dir artifacts/scientific \
        --setting RECSYS_BATCH_WAIT_MS --values 0,8

The setting is an environment variable of the service (default `RECSYS_MODEL_CONCURRENCY`). For
each value: `recsys serve` (1 worker, Redis) is started, warmed for 5 s, then measured for 15 s
with 4 connections and 10 s with 1, every request a different user (cache misses). Prints one line
per run (the phases of `serve_load.py`).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
from _machine import machine
from serve_load import free_port, phase, serve_command, wait_ready

from recsys.evaluation.report import write_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--setting", default="RECSYS_MODEL_CONCURRENCY", help="the environment variable to vary")
    ap.add_argument("--values", default="1,2", help="its values, comma-separated")
    ap.add_argument("--output", type=Path, help="also write the runs as JSON here")
    args = ap.parse_args()
    users = pl.read_parquet(args.model_dir / "data" / "users.parquet")["user_id"].to_list()
    random.Random(1).shuffle(users)
    path = Path(tempfile.mkdtemp(prefix="serve-conc-")) / "users.txt"
    path.write_text("\n".join(users) + "\n")
    runs: dict[str, dict] = {}
    for value in args.values.split(","):
        port, label = free_port(), f"{args.setting}={value}"
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "RECSYS_KEY_PREFIX": f"serve-conc-{value}-{os.getpid()}",
            args.setting: value,
        }
        proc = subprocess.Popen(serve_command(args.model_dir, port), env=env, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            phase(port, f"{label}, warm-up", path, 5, 4, 10, start=0)
            runs[f"{label}, 4 connections"] = phase(
                port, f"{label}, 4 connections", path, 15, 4, 10, start=1000
            )
            runs[f"{label}, 1 connection"] = phase(
                port, f"{label}, 1 connection", path, 10, 1, 10, start=5000
            )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    if args.output:
        report = {"command": "python benchmarks/serve_concurrency.py " + " ".join(sys.argv[1:])}
        write_json(args.output, {**report, "machine": machine(), "runs": runs})
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
