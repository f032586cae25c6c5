"""The experiment event log: exposures and outcomes, in Redis Streams or append-only local files.

Two streams, one record per entry (JSON in the field ``r``)::

    {prefix}:ab:exposures   one per served list in an experiment, or per failed request (event "error")
    {prefix}:ab:outcomes    every reported event: view, click, cart, purchase (with revenue)

Without Redis the same records are appended, one JSON line each, to
``{log_dir}/{stream}/{host}-{pid}.jsonl``: one file per writing process, so lines never interleave.
``pipelines.ab_drain`` moves both into partitioned Parquet; ``recsys.ab.report`` reads that.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import polars as pl

STREAMS = ("exposures", "outcomes")
FIELD = "r"

# Column types of the drained tables (a record's missing fields are null, unknown ones dropped).
SCHEMAS: dict[str, dict[str, Any]] = {
    "exposures": {
        "entry_id": pl.String,
        "ts": pl.Float64,  # seconds since the epoch, UTC
        "event": pl.String,  # "exposure" or "error"
        "experiment": pl.String,
        "variant": pl.String,
        "user_id": pl.String,
        "request_id": pl.String,
        "items": pl.List(pl.String),  # best first: position = index
        "model_version": pl.String,
        "basis": pl.String,
        "cached": pl.Boolean,
        "latency_ms": pl.Float64,
    },
    "outcomes": {
        "entry_id": pl.String,
        "ts": pl.Float64,
        "user_id": pl.String,
        "item_id": pl.String,
        "type": pl.String,  # view | click | cart | purchase
        "revenue": pl.Float64,
        "request_id": pl.String,
    },
}


def stream_key(prefix: str, stream: str) -> str:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; one of {STREAMS}")
    return f"{prefix}:ab:{stream}"


def exposure(
    experiment: str,
    variant: str,
    user_id: str,
    request_id: str,
    items: list[str],
    *,
    model_version: str,
    basis: str,
    cached: bool,
    latency_ms: float,
    event: str = "exposure",
    ts: float | None = None,
) -> dict[str, Any]:
    return {
        "ts": time.time() if ts is None else ts,
        "event": event,
        "experiment": experiment,
        "variant": variant,
        "user_id": user_id,
        "request_id": request_id,
        "items": items,
        "model_version": model_version,
        "basis": basis,
        "cached": cached,
        "latency_ms": round(latency_ms, 3),
    }


def outcome(
    user_id: str,
    item_id: str,
    type: str,
    *,
    revenue: float | None = None,
    request_id: str | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    return {
        "ts": time.time() if ts is None else ts,
        "user_id": user_id,
        "item_id": item_id,
        "type": type,
        "revenue": revenue,
        "request_id": request_id,
    }


def encode(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def frame(stream: str, entries: list[tuple[str, dict[str, Any]]]) -> pl.DataFrame:
    """(entry id, record) pairs as a table of ``SCHEMAS[stream]``."""
    schema = SCHEMAS[stream]
    rows = [{**{k: rec.get(k) for k in schema if k != "entry_id"}, "entry_id": eid} for eid, rec in entries]
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


class FileLog:
    """Append-only JSON lines, one file per stream and process; each append is one ``write`` + fsync."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self._fds: dict[str, int] = {}

    def path(self, stream: str) -> Path:
        return self.folder / stream / f"{self.name}.jsonl"

    def append(self, stream: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        fd = self._fds.get(stream)
        if fd is None:
            path = self.path(stream)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._fds[stream] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = "".join(encode(r) + "\n" for r in records).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class RedisLog:
    """Synchronous writer to the streams (the simulator's pre-period, tests, scripts)."""

    def __init__(self, client: Any, prefix: str = "recsys") -> None:
        self.client, self.prefix = client, prefix

    def append(self, stream: str, records: list[dict[str, Any]]) -> None:
        key = stream_key(self.prefix, stream)
        for s in range(0, len(records), 1000):
            pipe = self.client.pipeline(transaction=False)
            for r in records[s : s + 1000]:
                pipe.xadd(key, {FIELD: encode(r)})
            pipe.execute()

    def close(self) -> None:
        return None
