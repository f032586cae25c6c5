"""The list cache and the users' recent events: Redis when configured, in-process otherwise.

``MemoryStore`` is the embedded default: a TTL cache of lists and a bounded recent-events list per
user, in this process. ``RedisStore`` keeps both in Redis (the key layout of
``recsys.cache_keys``) and mirrors recent events in a ``MemoryStore``, so when Redis goes away the
service keeps answering (from the model, with this worker's own events), reports itself degraded and
retries with exponential back-off; a lost Redis costs latency, never a failed request.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict, deque
from typing import Any, Protocol

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - redis-py depends on the backport there
    from async_timeout import timeout

from recsys.cache_keys import catalogue_key, lists_key, recent_key

log = logging.getLogger(__name__)


class Store(Protocol):
    backend: str

    @property
    def degraded(self) -> bool: ...

    async def get_list(self, version: str, user_id: str, field: str) -> bytes | None: ...

    async def put_list(self, version: str, user_id: str, field: str, payload: bytes) -> None: ...

    async def add_recent(self, version: str, items_by_user: dict[str, list[str]]) -> None:
        """Append to each user's recent events and drop their cached lists."""
        ...

    async def recent(self, user_id: str) -> list[str]: ...

    async def check(self) -> bool:
        """Whether the backend answers now (reconnecting if it had gone)."""
        ...

    async def append_change(self, change: dict[str, Any]) -> None:
        """Append a catalogue change to the log every worker replays (raises ``StoreUnavailable``)."""
        ...

    async def changes_since(self, last: str) -> list[tuple[str, dict[str, Any]]]:
        """Catalogue changes after entry id ``last`` ("0-0": all), oldest first."""
        ...

    async def close(self) -> None: ...


class StoreUnavailable(Exception):
    """The shared store cannot take a write that must not be lost or kept to one worker."""


class MemoryStore:
    """In-process TTL cache, recent events and catalogue log (one worker's view)."""

    backend = "memory"

    def __init__(self, ttl_s: int, max_entries: int, recent_limit: int, recent_ttl_s: int) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self.recent_limit, self.recent_ttl_s = recent_limit, recent_ttl_s
        self._lists: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
        self._by_user: dict[str, set[tuple[str, str, str]]] = {}
        self._recent: dict[str, tuple[float, deque[str]]] = {}
        self._changes: list[dict[str, Any]] = []

    @property
    def degraded(self) -> bool:
        return False

    async def get_list(self, version: str, user_id: str, field: str) -> bytes | None:
        return self.get_list_now(version, user_id, field)

    def get_list_now(self, version: str, user_id: str, field: str) -> bytes | None:
        key = (version, user_id, field)
        hit = self._lists.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._drop(key)
            return None
        return hit[1]

    async def put_list(self, version: str, user_id: str, field: str, payload: bytes) -> None:
        key = (version, user_id, field)
        self._lists[key] = (time.monotonic() + self.ttl_s, payload)
        self._lists.move_to_end(key)
        self._by_user.setdefault(user_id, set()).add(key)
        while len(self._lists) > self.max_entries:
            self._drop(next(iter(self._lists)))

    def _drop(self, key: tuple[str, str, str]) -> None:
        self._lists.pop(key, None)
        keys = self._by_user.get(key[1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[key[1]]

    def invalidate(self, user_id: str) -> None:
        for key in list(self._by_user.pop(user_id, ())):
            self._lists.pop(key, None)

    async def add_recent(self, version: str, items_by_user: dict[str, list[str]]) -> None:
        self.add_recent_now(items_by_user)

    def add_recent_now(self, items_by_user: dict[str, list[str]]) -> None:
        now = time.monotonic()
        for user_id, items in items_by_user.items():
            expires, recent = self._recent.get(user_id, (0.0, deque(maxlen=self.recent_limit)))
            if expires < now:
                recent.clear()
            recent.extend(items)
            self._recent[user_id] = (now + self.recent_ttl_s, recent)
            self.invalidate(user_id)

    async def recent(self, user_id: str) -> list[str]:
        return self.recent_now(user_id)

    def recent_now(self, user_id: str) -> list[str]:
        entry = self._recent.get(user_id)
        if entry is None or entry[0] < time.monotonic():
            return []
        return list(entry[1])

    async def check(self) -> bool:
        return True

    async def append_change(self, change: dict[str, Any]) -> None:
        self._changes.append(change)

    async def changes_since(self, last: str) -> list[tuple[str, dict[str, Any]]]:
        start = int(last.split("-")[0])
        return [(f"{i + 1}-0", c) for i, c in enumerate(self._changes[start:], start=start)]

    async def close(self) -> None:
        return None


class RedisStore:
    """Redis with a local mirror of recent events and reconnection with back-off."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl_s: int,
        recent_limit: int,
        recent_ttl_s: int,
        timeout_s: float,
        reconnect_min_s: float,
        reconnect_max_s: float,
    ) -> None:
        import redis.asyncio as aioredis

        self.url, self.prefix, self.ttl_s = url, prefix, ttl_s
        self.recent_limit, self.recent_ttl_s = recent_limit, recent_ttl_s
        # Timeouts come from ``self._deadline()`` around each call: redis-py's own socket timeout
        # wraps every read in ``asyncio.wait_for`` (a task per call), a third of a cache hit's cost.
        self.client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, retry_on_timeout=False)
        self.timeout_s = timeout_s
        self.local = MemoryStore(ttl_s, 10_000, recent_limit, recent_ttl_s)
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._wait = reconnect_min_s
        self._pending: dict[tuple[str, str], list[str]] = {}  # events not yet in Redis

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def _usable(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._retry_at

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            log.warning("redis at %s unreachable (%s): serving without it, retrying", self.url, exc)
            self._down_since, self._wait = now, self.reconnect_min_s
        else:
            self._wait = min(self._wait * 2, self.reconnect_max_s)
        self._retry_at = now + self._wait

    async def _recovered(self) -> None:
        if self._down_since is None:
            return
        log.warning("redis at %s is back after %.1fs", self.url, time.monotonic() - self._down_since)
        self._down_since = None
        # Events that arrived during the outage: store them and drop the lists cached before them.
        pending, self._pending = self._pending, {}
        if pending:
            await self._write_recent(pending)

    async def _write_recent(self, pending: dict[tuple[str, str], list[str]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for (version, user_id), items in pending.items():
                key = recent_key(self.prefix, user_id)
                pipe.rpush(key, *items)
                pipe.ltrim(key, -self.recent_limit, -1)
                pipe.expire(key, self.recent_ttl_s)
                pipe.delete(lists_key(self.prefix, version, user_id))
            async with timeout(self.timeout_s):
                await pipe.execute()

    async def get_list(self, version: str, user_id: str, field: str) -> bytes | None:
        if not self._usable():
            return self.local.get_list_now(version, user_id, field)
        try:
            async with timeout(self.timeout_s):
                value = await self.client.hget(lists_key(self.prefix, version, user_id), field)
        except Exception as exc:  # any Redis failure degrades; it never fails the request
            self._failed(exc)
            return self.local.get_list_now(version, user_id, field)
        if self._down_since is not None:
            await self._recovered()
        return value.encode() if isinstance(value, str) else value

    async def put_list(self, version: str, user_id: str, field: str, payload: bytes) -> None:
        if not self._usable():
            await self.local.put_list(version, user_id, field, payload)
            return
        key = lists_key(self.prefix, version, user_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, payload)
                pipe.expire(key, self.ttl_s)
                async with timeout(self.timeout_s):
                    await pipe.execute()
        except Exception as exc:
            self._failed(exc)
            await self.local.put_list(version, user_id, field, payload)

    async def add_recent(self, version: str, items_by_user: dict[str, list[str]]) -> None:
        self.local.add_recent_now(items_by_user)
        batch = {(version, user_id): list(items) for user_id, items in items_by_user.items()}
        if self._usable():
            try:
                await self._write_recent(batch)
                await self._recovered()
                return
            except Exception as exc:
                self._failed(exc)
        for key, items in batch.items():
            self._pending.setdefault(key, []).extend(items)

    async def recent(self, user_id: str) -> list[str]:
        if not self._usable():
            return self.local.recent_now(user_id)
        try:
            async with timeout(self.timeout_s):
                values = await self.client.lrange(recent_key(self.prefix, user_id), 0, -1)
        except Exception as exc:
            self._failed(exc)
            return self.local.recent_now(user_id)
        await self._recovered()
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]

    async def check(self) -> bool:
        if not self._usable():
            return False
        try:
            async with timeout(self.timeout_s):
                await self.client.ping()
        except Exception as exc:
            self._failed(exc)
            return False
        await self._recovered()
        return True

    async def append_change(self, change: dict[str, Any]) -> None:
        if not self._usable():
            raise StoreUnavailable(f"redis at {self.url} is unreachable")
        try:
            async with timeout(self.timeout_s):
                await self.client.xadd(catalogue_key(self.prefix), {"change": json.dumps(change)})
        except Exception as exc:
            self._failed(exc)
            raise StoreUnavailable(f"redis at {self.url} is unreachable: {exc}") from exc

    async def changes_since(self, last: str) -> list[tuple[str, dict[str, Any]]]:
        if not self._usable():
            raise StoreUnavailable(f"redis at {self.url} is unreachable")
        try:
            async with timeout(self.timeout_s * 10):  # a long log on a restart
                entries = await self.client.xrange(catalogue_key(self.prefix), min=f"({last}", max="+")
        except Exception as exc:
            self._failed(exc)
            raise StoreUnavailable(f"redis at {self.url} is unreachable: {exc}") from exc
        out = []
        for entry_id, fields in entries or []:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            value = (fields or {}).get(b"change") or (fields or {}).get("change") or "{}"
            out.append((eid, json.loads(value)))
        return out

    async def close(self) -> None:
        await self.client.aclose()


def open_store(
    redis_url: str | None,
    *,
    prefix: str,
    ttl_s: int,
    max_entries: int,
    recent_limit: int,
    recent_ttl_s: int,
    timeout_s: float,
    reconnect_min_s: float,
    reconnect_max_s: float,
) -> MemoryStore | RedisStore:
    if not redis_url:
        return MemoryStore(ttl_s, max_entries, recent_limit, recent_ttl_s)
    return RedisStore(
        redis_url,
        prefix=prefix,
        ttl_s=ttl_s,
        recent_limit=recent_limit,
        recent_ttl_s=recent_ttl_s,
        timeout_s=timeout_s,
        reconnect_min_s=reconnect_min_s,
        reconnect_max_s=reconnect_max_s,
    )
