"""Uncached recommendations under `RECSYS_MODEL_CONCURRENCY` 1, 2, … side by side, with wrk.

    .venv/bin/python benchmarks/serve_concurrency.py --model-dir artifacts/scientific [--values 1,2]

For each value: `recsys serve` (1 worker, Redis) is started, warmed for 5 s, then measured for 15 s
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
from serve_load import free_port, phase, serve_command, wait_ready


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--values", default="1,2", help="RECSYS_MODEL_CONCURRENCY values, comma-separated")
    args = ap.parse_args()
    users = pl.read_parquet(args.model_dir / "data" / "users.parquet")["user_id"].to_list()
    random.Random(1).shuffle(users)
    path = Path(tempfile.mkdtemp(prefix="serve-conc-")) / "users.txt"
    path.write_text("\n".join(users) + "\n")
    for value in args.values.split(","):
        port = free_port()
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "RECSYS_KEY_PREFIX": f"serve-conc-{value}-{os.getpid()}",
            "RECSYS_MODEL_CONCURRENCY": value,
        }
        proc = subprocess.Popen(serve_command(args.model_dir, port), env=env, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            phase(port, f"concurrency {value}, warm-up", path, 5, 4, 10, start=0)
            phase(port, f"concurrency {value}, 4 connections", path, 15, 4, 10, start=1000)
            phase(port, f"concurrency {value}, 1 connection", path, 10, 1, 10, start=5000)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
