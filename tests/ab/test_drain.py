"""The drain moves every record into Parquet exactly once, however often it is interrupted."""

from __future__ import annotations

import json
import uuid

import polars as pl
import pytest
import redis

from pipelines.ab_drain import drain_files, drain_redis, read_table
from recsys.ab.log import FileLog, RedisLog, exposure, outcome, stream_key
from recsys.errors import ConfigError


class Crash(Exception):
    pass


def _records(n: int, offset: int = 0) -> tuple[list[dict], list[dict]]:
    exposures = [
        exposure(
            "exp",
            f"v{i % 2}",
            f"u{i}",
            f"r{i}",
            [f"i{i}", f"i{i + 1}"],
            model_version="m",
            basis="history",
            cached=False,
            latency_ms=1.5,
            ts=1_700_000_000 + i * 40.0,
        )
        for i in range(offset, offset + n)
    ]
    outcomes = [
        outcome(f"u{i}", f"i{i}", "click", request_id=f"r{i}", ts=1_700_000_000 + i * 40.0)
        for i in range(offset, offset + n)
    ]
    return exposures, outcomes


def _crash_at(batch_no: int):
    calls = {"n": 0}

    def hook(stream: str, parts: int) -> None:
        calls["n"] += 1
        if calls["n"] == batch_no:
            raise Crash(f"killed after writing batch {batch_no}")

    return hook


@pytest.fixture
def streams(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-drain-{uuid.uuid4().hex[:8]}"
    yield client, prefix
    client.delete(*(stream_key(prefix, s) for s in ("exposures", "outcomes")))


def _check_exactly_once(out, n: int) -> None:
    for stream in ("exposures", "outcomes"):
        table = read_table(out, stream)
        assert table.height == n, stream
        assert table["entry_id"].n_unique() == n, f"{stream}: duplicates"
    exp = read_table(out, "exposures")
    assert sorted(exp["request_id"].to_list()) == sorted(f"r{i}" for i in range(n))
    assert exp.filter(pl.col("request_id") == "r3")["items"].to_list() == [["i3", "i4"]]


def test_a_drain_run_twice_writes_each_record_once(streams, tmp_path):
    client, prefix = streams
    log = RedisLog(client, prefix)
    exposures, outcomes = _records(2500)
    log.append("exposures", exposures)
    log.append("outcomes", outcomes)
    stats = drain_redis(client, tmp_path / "out", prefix=prefix, batch=700)
    assert stats.written == {"exposures": 2500, "outcomes": 2500}
    again = drain_redis(client, tmp_path / "out", prefix=prefix, batch=700)
    assert again.written == {"exposures": 0, "outcomes": 0}
    _check_exactly_once(tmp_path / "out", 2500)
    assert client.xlen(stream_key(prefix, "exposures")) == 0  # acknowledged entries are deleted
    # Redis parts are dated by their entry ids (arrival), file parts by the records' own times.
    parts = list((tmp_path / "out" / "exposures").glob("date=*/part-*.parquet"))
    assert len(parts) == 4 and all(p.parent.name.startswith("date=20") for p in parts)


@pytest.mark.parametrize("crash_batch", [1, 2, 4, 5])
def test_a_drain_killed_after_writing_and_before_acknowledging_loses_and_duplicates_nothing(
    streams, tmp_path, crash_batch
):
    client, prefix = streams
    log = RedisLog(client, prefix)
    exposures, outcomes = _records(1000)
    log.append("exposures", exposures)
    log.append("outcomes", outcomes)
    out = tmp_path / "out"
    with pytest.raises(Crash):
        drain_redis(client, out, prefix=prefix, batch=300, after_write=_crash_at(crash_batch))
    # More traffic arrives before the rerun.
    more_e, more_o = _records(200, offset=1000)
    log.append("exposures", more_e)
    log.append("outcomes", more_o)
    stats = drain_redis(client, out, prefix=prefix, batch=300)
    assert sum(stats.skipped.values()) > 0  # the crashed batch was recognised, not rewritten
    _check_exactly_once(out, 1200)


def test_a_drain_killed_before_its_part_is_renamed_rewrites_that_batch(streams, tmp_path, monkeypatch):
    client, prefix = streams
    RedisLog(client, prefix).append("exposures", _records(500)[0])
    RedisLog(client, prefix).append("outcomes", _records(500)[1])
    import pipelines.ab_drain as drain

    real = drain._write_part
    calls = {"n": 0}

    def dying_write(path, table):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("killed while writing")
        real(path, table)

    monkeypatch.setattr(drain, "_write_part", dying_write)
    with pytest.raises(Crash):
        drain_redis(client, tmp_path / "out", prefix=prefix, batch=200)
    monkeypatch.setattr(drain, "_write_part", real)
    assert not list((tmp_path / "out").rglob("*.tmp"))  # no half-written part left behind
    drain_redis(client, tmp_path / "out", prefix=prefix, batch=200)
    _check_exactly_once(tmp_path / "out", 500)


def test_records_that_are_not_json_are_kept_aside(streams, tmp_path):
    client, prefix = streams
    client.xadd(stream_key(prefix, "outcomes"), {"r": "{not json"})
    RedisLog(client, prefix).append("outcomes", _records(3)[1])
    stats = drain_redis(client, tmp_path / "out", prefix=prefix)
    assert stats.written["outcomes"] == 3 and stats.rejected == 1
    (rejected,) = (tmp_path / "out" / "rejected").glob("*.jsonl")
    assert "{not json" in json.loads(rejected.read_text())["raw"]


def test_file_logs_drain_exactly_once_across_crashes_and_new_lines(tmp_path):
    logs = FileLog(tmp_path / "log")
    exposures, outcomes = _records(900)
    logs.append("exposures", exposures)
    logs.append("outcomes", outcomes)
    out = tmp_path / "out"
    with pytest.raises(Crash):
        drain_files(tmp_path / "log", out, batch=250, after_write=_crash_at(2))
    more_e, more_o = _records(300, offset=900)
    logs.append("exposures", more_e)
    logs.append("outcomes", more_o)
    drain_files(tmp_path / "log", out, batch=250)
    drain_files(tmp_path / "log", out, batch=250)  # nothing new: nothing written
    _check_exactly_once(out, 1200)
    days = {p.parent.name for p in (out / "exposures").glob("date=*/part-*.parquet")}
    assert days == {"date=2023-11-14", "date=2023-11-15"}  # 1200 records 40 s apart from 22:13 UTC


def test_a_line_still_being_written_waits_for_the_next_drain(tmp_path):
    logs = FileLog(tmp_path / "log")
    logs.append("outcomes", _records(3)[1])
    path = logs.path("outcomes")
    with path.open("ab") as fh:
        fh.write(b'{"ts": 1700000000, "user_id": "half')  # a writer mid-line
    stats = drain_files(tmp_path / "log", tmp_path / "out")
    assert stats.written["outcomes"] == 3
    with path.open("ab") as fh:
        fh.write(b'", "item_id": "x", "type": "click"}\n')
    stats = drain_files(tmp_path / "log", tmp_path / "out")
    assert stats.written["outcomes"] == 1
    assert read_table(tmp_path / "out", "outcomes")["user_id"].to_list()[-1] == "half"


def test_two_drains_into_one_folder_are_refused(tmp_path):
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".drain.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (tmp_path / "log").mkdir()
    try:
        with pytest.raises(ConfigError, match="another drain"):
            drain_files(tmp_path / "log", out)
    finally:
        os.close(fd)
