"""Drain the experiment event log into partitioned Parquet, losing and duplicating nothing.

Output::

    {out}/exposures/date=YYYY-MM-DD/part-{first}_{last}.parquet      (Redis: stream entry ids)
    {out}/outcomes/date=YYYY-MM-DD/part-{log}@{start}-{end}.parquet  (files: byte offsets)
    {out}/rejected/...                                              records that were not JSON

**Redis Streams.** The drain reads each stream as consumer ``drain`` of a consumer group: first
the entries delivered to it earlier and never acknowledged (a drain killed mid-way), then new ones.
Each batch is written as parts (one per day, each an atomic rename), and only then acknowledged
and deleted from the stream. A part's name carries the last entry id it holds, and parts are written
in entry order, so the largest such id is how far the output is complete: on a rerun, redelivered
entries at or below it are acknowledged without being written again. Killed before a part is
renamed: the entries are redelivered and written. Killed after: they are recognised and skipped.

**Files.** The same idea with byte offsets: a part's name carries the log file and the offset up to
which it holds that file's complete lines; a rerun starts each file there. The log files are never
changed, so a drain of files can be rerun at any time.

One drain per output folder at a time (a lock file); several are refused, not interleaved.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from recsys.ab.log import FIELD, STREAMS, frame, stream_key
from recsys.atomic import atomic_writer
from recsys.errors import ConfigError

log = logging.getLogger(__name__)
GROUP = "recsys-drain"
CONSUMER = "drain"
_REDIS_PART = re.compile(r"^part-(\d+)-(\d+)_(\d+)-(\d+)\.parquet$")
_FILE_PART = re.compile(r"^part-(.+)@(\d+)-(\d+)\.parquet$")


@dataclass
class DrainStats:
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    skipped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(STREAMS, 0)
    )  # already in the output
    rejected: int = 0
    parts: int = 0


def _date(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=timezone.utc).strftime("%Y-%m-%d")


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".drain.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another drain is writing to {out}; run one at a time") from None
        yield
    finally:
        os.close(fd)


def _write_part(path: Path, table: pl.DataFrame) -> None:
    with atomic_writer(path) as fh:
        table.write_parquet(fh, compression="zstd")


def _decode(raw: Any) -> dict[str, Any] | None:
    try:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _runs(entries: list[tuple[str, dict[str, Any], str]]) -> Iterator[list[tuple[str, dict[str, Any], str]]]:
    """Contiguous runs of entries with the same date (so parts hold contiguous id ranges)."""
    start = 0
    for i in range(1, len(entries) + 1):
        if i == len(entries) or entries[i][2] != entries[start][2]:
            yield entries[start:i]
            start = i


def _write_rejected(out: Path, name: str, raws: list[tuple[str, str]]) -> None:
    if raws:
        with atomic_writer(out / "rejected" / f"{name}.jsonl", "w") as fh:
            for eid, raw in raws:
                fh.write(json.dumps({"entry_id": eid, "raw": raw}) + "\n")


# ----- Redis ----------------------------------------------------------------------------------------
def redis_high_water(folder: Path) -> tuple[int, int]:
    """The largest entry id already written under ``folder`` ((0, 0): none)."""
    best = (0, 0)
    for path in folder.glob("date=*/part-*.parquet"):
        m = _REDIS_PART.match(path.name)
        if m:
            best = max(best, (int(m.group(3)), int(m.group(4))))
    return best


def drain_redis(
    client: Any,
    out: str | Path,
    *,
    prefix: str = "recsys",
    batch: int = 5000,
    after_write: Callable[[str, int], None] | None = None,
    progress: bool = False,
) -> DrainStats:
    """Move every entry of the streams into ``out``; ``after_write(stream, parts)`` is a test hook
    called after each batch is written and before it is acknowledged."""
    from redis.exceptions import ResponseError

    out, stats = Path(out), DrainStats()
    with _locked(out):
        for stream in STREAMS:
            key, folder = stream_key(prefix, stream), out / stream
            try:
                client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            high = redis_high_water(folder)
            for start in ("0", ">"):  # first what was delivered and never acknowledged, then new entries
                while True:
                    reply = client.xreadgroup(GROUP, CONSUMER, {key: start}, count=batch)
                    entries = reply[0][1] if reply else []
                    entries = [(e, f) for e, f in entries if f is not None]  # deleted while pending
                    if not entries:
                        break
                    ids = [e.decode() if isinstance(e, bytes) else str(e) for e, _ in entries]
                    fresh: list[tuple[str, dict[str, Any], str]] = []
                    rejected: list[tuple[str, str]] = []
                    for eid, (_, fields) in zip(ids, entries, strict=True):
                        if _id_tuple(eid) <= high:
                            stats.skipped[stream] += 1
                            continue
                        raw = fields.get(FIELD.encode(), fields.get(FIELD))
                        record = _decode(raw)
                        if record is None:
                            rejected.append((eid, repr(raw)[:10_000]))
                            continue
                        fresh.append((eid, record, _date(_id_tuple(eid)[0] / 1000)))
                    _write_rejected(out, f"{stream}-{ids[0]}_{ids[-1]}", rejected)
                    stats.rejected += len(rejected)
                    for run in _runs(fresh):
                        first, last = run[0][0], run[-1][0]
                        table = frame(stream, [(e, r) for e, r, _ in run])
                        _write_part(folder / f"date={run[0][2]}" / f"part-{first}_{last}.parquet", table)
                        stats.written[stream] += table.height
                        stats.parts += 1
                    if after_write is not None:
                        after_write(stream, stats.parts)
                    client.xack(key, GROUP, *ids)
                    client.xdel(key, *ids)
                    high = max(high, _id_tuple(ids[-1]))
                    if progress:
                        log.info(
                            "%s: %d written, %d skipped", stream, stats.written[stream], stats.skipped[stream]
                        )
    return stats


# ----- files ----------------------------------------------------------------------------------------
def file_high_water(folder: Path) -> dict[str, int]:
    """Per log file (stem), the byte offset up to which its lines are written."""
    done: dict[str, int] = {}
    for path in folder.glob("date=*/part-*.parquet"):
        m = _FILE_PART.match(path.name)
        if m:
            done[m.group(1)] = max(done.get(m.group(1), 0), int(m.group(3)))
    return done


def drain_files(
    log_dir: str | Path,
    out: str | Path,
    *,
    batch: int = 5000,
    after_write: Callable[[str, int], None] | None = None,
) -> DrainStats:
    """Move the complete lines of ``log_dir``'s JSON-lines logs into ``out`` (see the module)."""
    log_dir, out, stats = Path(log_dir), Path(out), DrainStats()
    if not log_dir.is_dir():
        raise ConfigError(f"no event log folder {log_dir}")
    with _locked(out):
        for stream in STREAMS:
            folder = out / stream
            done = file_high_water(folder)
            for path in sorted((log_dir / stream).glob("*.jsonl")):
                offset = done.get(path.stem, 0)
                with path.open("rb") as fh:
                    fh.seek(offset)
                    while True:
                        lines: list[tuple[int, int, bytes]] = []
                        pos = offset
                        while len(lines) < batch:
                            line = fh.readline()
                            if not line.endswith(b"\n"):  # end of file, or a line still being written
                                break
                            lines.append((pos, pos + len(line), line))
                            pos += len(line)
                        if not lines:
                            break
                        fresh: list[tuple[str, dict[str, Any], str]] = []
                        rejected = []
                        for start, _, line in lines:
                            record = _decode(line)
                            eid = f"{path.stem}@{start}"
                            if record is None:
                                rejected.append((eid, line.decode(errors="replace")[:10_000]))
                                continue
                            ts = record.get("ts")
                            day = _date(float(ts)) if isinstance(ts, (int, float)) else "unknown"
                            fresh.append((eid, record, day))
                        _write_rejected(out, f"{stream}-{path.stem}@{offset}-{pos}", rejected)
                        stats.rejected += len(rejected)
                        ends = {f"{path.stem}@{s}": e for s, e, _ in lines}
                        for run in _runs(fresh):
                            r_start = int(run[0][0].rsplit("@", 1)[1])
                            r_end = ends[run[-1][0]]
                            table = frame(stream, [(e, r) for e, r, _ in run])
                            name = f"part-{path.stem}@{r_start:012d}-{r_end:012d}.parquet"
                            _write_part(folder / f"date={run[0][2]}" / name, table)
                            stats.written[stream] += table.height
                            stats.parts += 1
                        if not fresh:  # only rejected lines: mark the range as done with an empty part
                            name = f"part-{path.stem}@{offset:012d}-{pos:012d}.parquet"
                            _write_part(folder / "date=unknown" / name, frame(stream, []))
                        if after_write is not None:
                            after_write(stream, stats.parts)
                        offset = pos
    return stats


def read_table(out: str | Path, stream: str) -> pl.DataFrame:
    """Every drained record of ``stream`` (an empty table of the right columns when there are none)."""
    from recsys.ab.log import SCHEMAS

    files = sorted(Path(out, stream).glob("date=*/part-*.parquet"))
    if not files:
        return pl.DataFrame(schema=SCHEMAS[stream])
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
