"""Batch scoring: top-K for many users, streamed to partitioned Parquet, on one machine or on Ray.

The users are cut into partitions of ``partition_size``; each partition is scored in chunks by
``score_partition`` (the ``Recommender``'s own ``recommend_rows``, the code path the API serves)
and written atomically as ``part-NNNNN.parquet`` (user_id, rank, item_id, score, model_version, and
reasons when asked). ``_job.json`` records what the folder holds; a rerun with the same job skips
the partitions already written, so a crash costs at most the partitions in flight, and the output
is the same as an uninterrupted run. Memory is bounded by one chunk per worker, not by the users.

The local engine runs the partitions in this process; the Ray engine (``pipelines.score_ray``)
ships the artifact to each worker once and runs the same ``score_partition`` there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.atomic import atomic_writer, write_text
from recsys.errors import ConfigError, DataError
from recsys.recommender import Recommendation, Recommender

log = logging.getLogger(__name__)

JOB = "_job.json"
SCHEMA = {
    "user_id": pl.String,
    "rank": pl.Int32,
    "item_id": pl.String,
    "score": pl.Float32,
    "model_version": pl.String,
}


@dataclass(frozen=True)
class ScoreJob:
    model_dir: str
    model_version: str
    k: int
    partition_size: int
    n_users: int
    users_digest: str  # which users, in which order
    reasons: bool

    def check_against(self, other: ScoreJob, out: Path) -> None:
        if self != other:
            diff = {k: (v, getattr(other, k)) for k, v in asdict(self).items() if getattr(other, k) != v}
            raise ConfigError(
                f"{out} holds another job's output ({diff}); use a new --out folder or --overwrite"
            )


def read_users(spec: str, rec: Recommender) -> list[str]:
    """``all`` (every user of the artifact) or a file: .txt (one id per line), .csv/.parquet
    (a ``user_id`` column)."""
    if spec == "all":
        return [str(u) for u in rec.data.users.ids.to_list()]
    path = Path(spec)
    if not path.exists():
        raise DataError(f"users file {path} does not exist (or pass --users all)")
    if path.suffix in (".parquet", ".csv"):
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
        if "user_id" not in frame.columns:
            raise DataError(f"needs a user_id column; found {frame.columns}", file=path)
        users = frame["user_id"].cast(pl.String).to_list()
    else:
        users = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not users:
        raise DataError("no user ids", file=path)
    if any(u is None for u in users):
        raise DataError("empty user ids", file=path, column="user_id")
    return list(dict.fromkeys(users))  # each user once, first occurrence's order


def users_digest(users: Sequence[str]) -> str:
    h = hashlib.sha256()
    for u in users:
        h.update(u.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def partition_path(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}.parquet"


def score_partition(
    rec: Recommender,
    users: Sequence[str],
    k: int,
    model_version: str,
    *,
    reasons: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """Top-``k`` rows for ``users`` through ``Recommender.recommend``, one chunk at a time."""
    frames = []
    step = rec.config.chunk_size
    for s in range(0, len(users), step):
        chunk = list(users[s : s + step])
        lists = rec.recommend(chunk, k, with_reasons=reasons)
        frames.append(_frame(chunk, lists, model_version, reasons))
        if on_chunk is not None:
            on_chunk(len(chunk))
    return pl.concat(frames) if frames else _frame([], [], model_version, reasons)


def _frame(
    users: Sequence[str], lists: Sequence[Sequence[Recommendation]], model_version: str, reasons: bool
) -> pl.DataFrame:
    lengths = [len(lst) for lst in lists]
    ranks = [np.arange(1, n + 1, dtype=np.int32) for n in lengths]
    columns: dict[str, Any] = {
        "user_id": np.repeat(np.asarray(users, dtype=object), lengths) if users else [],
        "rank": np.concatenate(ranks) if ranks else np.zeros(0, np.int32),
        "item_id": [r.item_id for lst in lists for r in lst],
        "score": np.array([r.score for lst in lists for r in lst], dtype=np.float32),
        "model_version": [model_version] * sum(lengths),
    }
    frame = pl.DataFrame(columns, schema=SCHEMA)
    if reasons:
        frame = frame.with_columns(
            pl.Series("reasons", [r.reasons for lst in lists for r in lst], dtype=pl.List(pl.String))
        )
    return frame


def write_partition(frame: pl.DataFrame, path: Path) -> None:
    """Write ``path`` atomically: a reader sees the whole partition or none."""
    with atomic_writer(path) as fh:
        frame.write_parquet(fh)


def _complete(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        pl.read_parquet_schema(path)
    except Exception:
        return False
    return True


def prepare(out: Path, job: ScoreJob, *, overwrite: bool) -> list[int]:
    """Check or create ``out``; returns the partitions still to write."""
    out.mkdir(parents=True, exist_ok=True)
    meta = out / JOB
    if meta.exists() and not overwrite:
        old = ScoreJob(**json.loads(meta.read_text()))
        job.check_against(old, out)
    elif meta.exists():
        for part in out.glob("part-*.parquet"):
            part.unlink()
    write_text(meta, json.dumps(asdict(job), indent=2) + "\n")
    n_parts = -(-job.n_users // job.partition_size)
    return [i for i in range(n_parts) if not _complete(partition_path(out, i))]


def partitions(users: Sequence[str], size: int, todo: Sequence[int]) -> Iterator[tuple[int, Sequence[str]]]:
    for i in todo:
        yield i, users[i * size : (i + 1) * size]


def run_local(
    rec: Recommender,
    users: Sequence[str],
    job: ScoreJob,
    out: Path,
    todo: Sequence[int],
    on_chunk: Callable[[int], None] | None = None,
) -> None:
    """Score and write the ``todo`` partitions in this process."""
    for i, part in partitions(users, job.partition_size, todo):
        frame = score_partition(rec, part, job.k, job.model_version, reasons=job.reasons, on_chunk=on_chunk)
        write_partition(frame, partition_path(out, i))


def read_output(out: Path) -> pl.DataFrame:
    """Every partition of a finished job, in user order."""
    parts = sorted(out.glob("part-*.parquet"))
    if not parts:
        raise DataError(f"{out} has no partitions")
    return pl.concat([pl.read_parquet(p) for p in parts])


def summary(out: Path, job: ScoreJob, seconds: float, scored: int) -> dict[str, Any]:
    return {
        "out": str(out),
        "job": asdict(job),
        "users_scored_now": scored,
        "seconds": round(seconds, 1),
        "users_per_s": round(scored / seconds, 1) if seconds > 0 else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


@dataclass(frozen=True)
class ScoreRun:
    """What ``recsys score`` was asked to do."""

    model_dir: Path
    users: str
    k: int
    out: Path
    engine: str = "local"
    workers: int = 2
    partition_size: int = 5000
    reasons: bool = False
    overwrite: bool = False
    to_redis: str | None = None
    redis_prefix: str = "recsys"
    ttl_s: int = 86400
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"engine must be local or ray, not {self.engine!r}")
        if self.k < 1 or self.partition_size < 1 or self.workers < 1 or self.ttl_s < 1:
            raise ConfigError("k, partition size, workers and ttl must be at least 1")


def run_scoring(run: ScoreRun) -> dict[str, Any]:
    """Score every user of ``run`` into ``run.out`` (resuming), then export to Redis if asked."""
    from tqdm.auto import tqdm

    from recsys.artifacts import artifact_version, load_recommender

    t_load = time.perf_counter()
    rec = load_recommender(run.model_dir)
    rec.ranker.compile()  # same scores, less time per user; LightGBM where it cannot
    users = read_users(run.users, rec)
    job = ScoreJob(
        model_dir=str(Path(run.model_dir).resolve()),
        model_version=artifact_version(run.model_dir),
        k=run.k,
        partition_size=run.partition_size,
        n_users=len(users),
        users_digest=users_digest(users),
        reasons=run.reasons,
    )
    todo = prepare(run.out, job, overwrite=run.overwrite)
    done_users = sum(len(p) for _, p in partitions(users, job.partition_size, todo))
    log.info(
        "%d users, %d partitions to write (%d already done); model loaded in %.1fs",
        len(users),
        len(todo),
        -(-job.n_users // job.partition_size) - len(todo),
        time.perf_counter() - t_load,
    )
    t0 = time.perf_counter()
    with tqdm(total=done_users, unit="user", desc=f"scoring ({run.engine})", disable=not run.progress) as bar:
        if run.engine == "local":
            run_local(rec, users, job, run.out, todo, on_chunk=bar.update)
        else:
            from pipelines.score_ray import run_ray

            run_ray(
                Path(run.model_dir), users, job, run.out, todo, workers=run.workers, on_partition=bar.update
            )
    report = summary(run.out, job, time.perf_counter() - t0, done_users)
    if run.to_redis:
        report["exported_to_redis"] = export_output(run.out, rec, run.to_redis, run.redis_prefix, run.ttl_s)
    return report


def export_output(out: Path, rec: Recommender, redis_url: str, prefix: str, ttl_s: int) -> int:
    """Every partition of ``out`` into the serving cache, one partition in memory at a time."""
    import redis

    from pipelines.export import export_lists

    job = ScoreJob(**json.loads((out / JOB).read_text()))
    client = redis.Redis.from_url(redis_url)
    written = 0
    for part in sorted(out.glob("part-*.parquet")):
        frame = pl.read_parquet(part)
        has_reasons = "reasons" in frame.columns
        grouped = frame.group_by("user_id", maintain_order=True).agg(
            "item_id", "score", *(["reasons"] if has_reasons else [])
        )
        known = rec.data.users.index(grouped["user_id"]) >= 0

        def lists(g: pl.DataFrame = grouped, known: np.ndarray = known) -> Iterator[tuple[str, str, list]]:
            for row, ok in zip(g.iter_rows(named=True), known, strict=True):
                why = row.get("reasons") or [[] for _ in row["item_id"]]
                recs = [
                    Recommendation(i, float(s), list(r))
                    for i, s, r in zip(row["item_id"], row["score"], why, strict=True)
                ]
                yield row["user_id"], ("history" if ok else "popular"), recs

        written += export_lists(client, job.model_version, lists(), k=job.k, ttl_s=ttl_s, prefix=prefix)
    return written
