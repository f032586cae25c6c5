"""Batch scoring throughput and memory: the local engine on Scientific and on synthetic shops of
growing size, and Ray with 2 workers beside local in the same run.

    .venv/bin/python benchmarks/batch_scoring.py --scientific artifacts/scientific \
        [--sizes 100000,300000,1000000] [--k 100] [--work runs/batch-bench]

Each measurement runs in a fresh child process (``--child``): it loads the artifact, notes its
resident memory, scores every user into Parquet partitions, and reports users/s and the peak
resident memory (``getrusage``). For each synthetic size the script writes the shop with
``recsys synth`` and trains a light hybrid on it (ALS, co-visitation, zero-shot text, popularity;
the ranker learns from 20,000 sampled users) with ``recsys train``. Writes
benchmarks/results/batch_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECSYS = str(ROOT / ".venv" / "bin" / "recsys")

LIGHT = """\
[recommender]
label_folds = 1
label_users = 20000
[recommender.scorers.als]
model = "als"
[recommender.scorers.covisit]
model = "covisit"
[recommender.scorers.text]
model = "text"
n_recent = 1
[recommender.scorers.popularity]
model = "popularity"
[recommender.candidates]
als = 100
covisit = 50
text = 50
popularity = 20
[encoder]
enabled = false
[sasrec]
enabled = false
"""


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def child(args: argparse.Namespace) -> None:
    """Score every user of the artifact; print one JSON line."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch

    from pipelines.score import ScoreJob, prepare, run_local, users_digest
    from recsys.artifacts import artifact_version, load_recommender

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rec = load_recommender(args.model_dir)
    rec.ranker.compile()  # as `recsys score` and each Ray actor do: the engines differ only in workers
    rec.ranker.predict_threads = 1
    users = [str(u) for u in rec.data.users.ids.to_list()]
    if args.limit_users:
        users = users[: args.limit_users]
    loaded = rss_mb()
    load_s = time.perf_counter() - t0
    job = ScoreJob(
        model_dir=str(args.model_dir),
        model_version=artifact_version(args.model_dir),
        k=args.k,
        partition_size=args.partition_size,
        n_users=len(users),
        users_digest=users_digest(users),
        reasons=False,
    )
    todo = prepare(args.out, job, overwrite=True)
    t0 = time.perf_counter()
    stages: dict = {}
    if args.engine == "local":
        run_local(rec, users, job, args.out, todo)
    else:
        from pipelines.score_ray import run_ray

        stages = run_ray(args.model_dir, users, job, args.out, todo, workers=args.workers)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "RESULT "
        + json.dumps(
            {
                "engine": args.engine,
                "users": len(users),
                "seconds": round(seconds, 1),
                "users_per_s": round(len(users) / seconds, 1),
                "load_s": round(load_s, 1),
                "rss_after_load_mb": round(loaded),
                "peak_rss_mb": round(peak),
                "scoring_overhead_mb": round(peak - loaded),
                "partition_size": args.partition_size,
                **stages,
            }
        ),
        flush=True,
    )


def measure(
    model_dir: Path, out: Path, engine: str, k: int, partition_size: int, workers: int = 2, limit: int = 0
) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model-dir", str(model_dir), "--out", str(out)]
    cmd += ["--limit-users", str(limit)]
    cmd += [
        "--engine",
        engine,
        "--k",
        str(k),
        "--partition-size",
        str(partition_size),
        "--workers",
        str(workers),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stderr[-3000:]}")
    result: dict = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    print(
        f"{engine:>6} {model_dir.name:<28} {result['users']:>9,} users {result['users_per_s']:>8.1f} users/s "
        f"peak {result['peak_rss_mb']:>6} MB (model {result['rss_after_load_mb']} MB)",
        flush=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return result


def build_synthetic(n_users: int, work: Path) -> tuple[Path, dict]:
    data, artifact = work / f"synth-{n_users}", work / f"artifact-{n_users}"
    times = {}
    if not (artifact / "manifest.json").exists():
        t0 = time.perf_counter()
        subprocess.run(
            [RECSYS, "synth", "--users", str(n_users), "--items", "5000", "--out", str(data)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times["synth_s"] = round(time.perf_counter() - t0, 1)
        config = work / "light.toml"
        config.write_text(LIGHT)
        t0 = time.perf_counter()
        subprocess.run(
            [
                RECSYS,
                "train",
                "--items",
                str(data / "items.parquet"),
                "--interactions",
                str(data / "interactions.parquet"),
                "--out",
                str(artifact),
                "--config",
                str(config),
                "--no-progress",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times["train_s"] = round(time.perf_counter() - t0, 1)
    return artifact, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--engine", default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scientific", type=Path, help="the Scientific artifact (recsys train)")
    ap.add_argument(
        "--sizes", default="100000,300000,1000000", help="synthetic users, comma-separated ('' none)"
    )
    ap.add_argument("--limit-users", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--partition-size", type=int, default=5000)
    ap.add_argument(
        "--ray-partition-size", type=int, default=1000, help="partitions for the Ray run (balance)"
    )
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "batch-bench")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "batch_scoring.json")
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    from _machine import machine

    from recsys.atomic import write_text

    args.work.mkdir(parents=True, exist_ok=True)
    # Runs of earlier invocations stay in the JSON (each run says its own command).
    runs = json.loads(args.output.read_text())["runs"] if args.output.exists() else {}
    command = " ".join(["python", *sys.argv])
    report: dict = {"machine": machine(), "k": args.k, "runs": runs}
    if args.scientific:
        local = measure(args.scientific, args.work / "out-sci-local", "local", args.k, args.partition_size)
        ray = measure(
            args.scientific, args.work / "out-sci-ray", "ray", args.k, args.ray_partition_size, args.workers
        )
        report["runs"]["scientific"] = {
            "command": command,
            "local": local,
            "ray": ray,
            "ray_over_local": round(ray["users_per_s"] / local["users_per_s"], 3),
        }
        print(f"ray ({args.workers} workers) / local: {ray['users_per_s'] / local['users_per_s']:.2f}")
    for spec in [x for x in args.sizes.split(",") if x]:
        n, _, limit = spec.partition("/")
        artifact, times = build_synthetic(int(n), args.work)
        result = measure(
            artifact, args.work / f"out-{n}", "local", args.k, args.partition_size, limit=int(limit or 0)
        )
        name = f"synthetic_{n}" + (f"_first_{limit}" if limit else "")
        report["runs"][name] = {**result, **times, "catalogue_users": int(n), "command": command}
        write_text(args.output, json.dumps(report, indent=2) + "\n")  # after each size: nothing lost
    write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
