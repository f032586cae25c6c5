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
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.errors import ConfigError, DataError
from recsys.recommender import Recommender

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
    rec: Recommender, users: Sequence[str], k: int, model_version: str, *, reasons: bool = False
) -> pl.DataFrame:
    """Top-``k`` rows for ``users`` through ``Recommender.recommend`` (chunked inside)."""
    lists = rec.recommend(list(users), k, with_reasons=reasons)
    lengths = [len(lst) for lst in lists]
    columns: dict[str, Any] = {
        "user_id": np.repeat(np.asarray(users, dtype=object), lengths),
        "rank": np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in lengths])
        if lengths
        else np.zeros(0, np.int32),
        "item_id": [r.item_id for lst in lists for r in lst],
        "score": np.array([r.score for lst in lists for r in lst], dtype=np.float32),
        "model_version": model_version,
    }
    frame = pl.DataFrame(columns, schema=SCHEMA)
    if reasons:
        frame = frame.with_columns(
            pl.Series("reasons", [r.reasons for lst in lists for r in lst], dtype=pl.List(pl.String))
        )
    return frame


def write_partition(frame: pl.DataFrame, path: Path) -> None:
    """Write ``path`` atomically: a reader sees the whole partition or none."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        frame.write_parquet(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    tmp = meta.with_name(f".{JOB}.tmp")
    tmp.write_text(json.dumps(asdict(job), indent=2) + "\n")
    os.replace(tmp, meta)
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
    on_partition: Callable[[int, int], None] | None = None,
) -> None:
    """Score and write the ``todo`` partitions in this process."""
    for i, part in partitions(users, job.partition_size, todo):
        frame = score_partition(rec, part, job.k, job.model_version, reasons=job.reasons)
        write_partition(frame, partition_path(out, i))
        if on_partition is not None:
            on_partition(i, len(part))


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
