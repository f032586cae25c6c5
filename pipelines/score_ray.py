"""The Ray engine of batch scoring: the same ``score_partition`` on a pool of Ray actors.

The artifact folder's files go into Ray's object store once; each actor unpacks them into its own
temporary folder and loads the ``Recommender`` once, so workers need no shared filesystem and the
model crosses the network once per worker, not once per partition. Partitions go to the actors as
they free up; their frames come back to the driver, which writes each partition atomically, so
resuming and the output format are the local engine's.

``RAY_ADDRESS`` names a running cluster; without it a local Ray with ``workers`` CPUs is started
for the run (and stopped after it).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.score import ScoreJob, partition_path, partitions, score_partition, write_partition

log = logging.getLogger(__name__)


def pack_artifact(folder: Path) -> dict[str, bytes]:
    """Every file of the artifact by its relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class PartitionScorer:
    """One Ray worker: the artifact unpacked and loaded once, then partitions on demand."""

    def __init__(self, files: dict[str, bytes], threads: int = 1) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        from recsys.artifacts import load_recommender

        torch.set_num_threads(threads)
        threadpool_limits(threads)
        self.folder = Path(tempfile.mkdtemp(prefix="recsys-artifact-"))
        for name, blob in files.items():
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        self.rec = load_recommender(self.folder)
        self.rec.ranker.compile()
        self.rec.ranker.predict_threads = threads

    def ready(self) -> int:
        return self.rec.data.n_users

    def score(self, index: int, users: Sequence[str], k: int, version: str, reasons: bool) -> tuple[int, Any]:
        frame = score_partition(self.rec, users, k, version, reasons=reasons)
        return index, frame.to_arrow()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def run_ray(
    model_dir: Path,
    users: Sequence[str],
    job: ScoreJob,
    out: Path,
    todo: Sequence[int],
    *,
    workers: int = 2,
    on_partition: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Score the ``todo`` partitions on Ray actors and write them here; returns the seconds spent
    starting Ray and loading the model on every actor, and scoring."""
    import ray
    from ray.util import ActorPool

    address = os.environ.get("RAY_ADDRESS")
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        files = ray.put(pack_artifact(model_dir))  # once into the object store
        actor = ray.remote(num_cpus=1)(PartitionScorer)
        actors = [actor.remote(files) for _ in range(workers)]
        ray.get([a.ready.remote() for a in actors])  # type: ignore[attr-defined]
        startup = time.perf_counter() - t0
        log.info("ray: %d actors ready in %.1fs", workers, startup)
        t0 = time.perf_counter()
        pool = ActorPool(actors)
        work = [(i, list(part)) for i, part in partitions(users, job.partition_size, todo)]
        sizes = {i: len(part) for i, part in work}
        results = pool.map_unordered(
            lambda a, w: a.score.remote(w[0], w[1], job.k, job.model_version, job.reasons), work
        )
        for index, table in results:
            write_partition(pl.from_arrow(table), partition_path(out, index))  # type: ignore[arg-type]
            if on_partition is not None:
                on_partition(sizes[index])
        ray.get([a.close.remote() for a in actors])  # type: ignore[attr-defined]
        return {"startup_s": round(startup, 1), "scoring_s": round(time.perf_counter() - t0, 1)}
    finally:
        if started:
            ray.shutdown()
