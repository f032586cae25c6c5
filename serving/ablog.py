"""Exposure and outcome records, written off the request path.

Requests only append to an in-process buffer; a background task writes the buffer every
``ab_flush_s`` seconds, in one pipeline, to the Redis streams (or to this worker's append-only
files without Redis). While Redis is unreachable the records stay buffered and are written when it
is back, in order; past ``ab_buffer_records`` the oldest are dropped and counted
(``recsys_ab_records_dropped_total``), so an outage can cost records but never memory or latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge

from recsys.ab.log import FIELD, STREAMS, FileLog, encode, stream_key
from serving.store import timeout  # asyncio's, or the backport before 3.11

log = logging.getLogger(__name__)
BATCH = 2000


class ExperimentLog:
    def __init__(
        self,
        *,
        redis_client: Any | None,
        prefix: str,
        log_dir: Path,
        max_buffer: int,
        timeout_s: float,
        registry: CollectorRegistry,
    ) -> None:
        self.client, self.prefix, self.timeout_s = redis_client, prefix, timeout_s
        self.files = None if redis_client is not None else FileLog(log_dir)
        self.buffer: deque[tuple[str, dict[str, Any]]] = deque()
        self.max_buffer = max_buffer
        self.written = Counter(
            "recsys_ab_records_total", "experiment records written", ["stream"], registry=registry
        )
        self.dropped = Counter(
            "recsys_ab_records_dropped_total",
            "experiment records dropped because the buffer was full (a long Redis outage)",
            registry=registry,
        )
        self.buffered = Gauge(
            "recsys_ab_records_buffered", "records waiting to be written", registry=registry
        )
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def backend(self) -> str:
        return "file" if self.files is not None else "redis"

    def add(self, stream: str, record: dict[str, Any]) -> None:
        self.buffer.append((stream, record))
        while len(self.buffer) > self.max_buffer:
            self.buffer.popleft()
            self.dropped.inc()

    async def flush(self) -> bool:
        """Write what is buffered; False when the backend failed (the records stay buffered)."""
        async with self._lock:
            while self.buffer:
                batch = [self.buffer.popleft() for _ in range(min(BATCH, len(self.buffer)))]
                try:
                    await self._write(batch)
                except Exception as exc:
                    self.buffer.extendleft(reversed(batch))
                    log.warning("experiment log write failed (%s); %d records kept", exc, len(self.buffer))
                    self.buffered.set(len(self.buffer))
                    return False
                for stream in STREAMS:
                    n = sum(1 for s, _ in batch if s == stream)
                    if n:
                        self.written.labels(stream).inc(n)
            self.buffered.set(0)
            return True

    async def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if self.files is not None:
            files = self.files
            by_stream: dict[str, list[dict[str, Any]]] = {}
            for stream, record in batch:
                by_stream.setdefault(stream, []).append(record)

            def write() -> None:
                for s, records in by_stream.items():
                    files.append(s, records)

            await anyio.to_thread.run_sync(write)
            return
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, record in batch:
                pipe.xadd(stream_key(self.prefix, stream), {FIELD: encode(record)})
            async with timeout(self.timeout_s * 10):
                await pipe.execute()

    def start(self, every_s: float) -> None:
        """Run the background writer (``run``) in this event loop until ``close()``."""
        self._writer = asyncio.get_running_loop().create_task(self.run(every_s))

    async def run(self, every_s: float) -> None:
        """The background writer: flush every ``every_s``, backing off while the backend fails.

        It returns after ``stop()``, once the write in progress (if any) is done. Cancelling it
        instead can lose the batch it holds, which is why ``close()`` stops it this way.
        """
        wait = every_s
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stop.is_set():
                return
            ok = await self.flush()
            wait = every_s if ok else min(wait * 2, 30.0)

    def stop(self) -> None:
        """Ask ``run`` to return; what is still buffered is written by ``close()``."""
        self._stop.set()

    async def close(self) -> None:
        """Stop the writer ``start`` began and wait for its write in flight, then write the rest."""
        self.stop()
        if self._writer is not None:
            try:
                await self._writer
            except Exception:  # run() never raises by design; closing goes on if it did
                log.exception("the experiment log writer failed")
        await self.flush()
        if self.files is not None:
            self.files.close()
