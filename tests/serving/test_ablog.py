"""The experiment log's background writer: a shutdown in the middle of writing loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import time

from prometheus_client import CollectorRegistry

from serving.ablog import ExperimentLog


def test_stopping_the_writer_mid_stream_keeps_every_record(tmp_path, monkeypatch):
    fsync = os.fsync
    # a slow disk, so that the shutdown lands in the middle of a write
    monkeypatch.setattr(os, "fsync", lambda fd: (time.sleep(0.005), fsync(fd)))

    async def scenario() -> int:
        elog = ExperimentLog(
            redis_client=None,
            prefix="t",
            log_dir=tmp_path,
            max_buffer=100_000,
            timeout_s=1.0,
            registry=CollectorRegistry(),
        )
        writer = asyncio.create_task(elog.run(0.001))
        added = 0
        for _ in range(100):  # records arrive while batches are being written
            for _ in range(3):
                elog.add("exposures", {"n": added})
                added += 1
            await asyncio.sleep(0.0005)
        elog.stop()
        await writer
        await elog.close()
        return added

    for _ in range(5):  # stops land at different points of the writer's cycle
        for f in tmp_path.rglob("*.jsonl"):
            f.unlink()
        added = asyncio.run(scenario())
        lines = [json.loads(x) for f in tmp_path.rglob("*.jsonl") for x in f.read_text().splitlines()]
        assert [r["n"] for r in lines] == list(range(added))
