"""The served model: one ``Recommender`` behind a reference that changes atomically.

Readers take ``holder.current`` once per request and use that object throughout, so a reload or
a catalogue change never shows a request half of one state. Writers (reload, new items) build the
next state off the event loop, under one lock, and swap the reference when it is complete; a model
that fails to load or to answer a smoke request is refused and the old one keeps serving.

Model calls run in worker threads, at most ``model_concurrency`` at once, each with
``model_threads`` torch, BLAS and LightGBM threads, so cache hits keep being answered on the event
loop while lists are computed. Most of a model call runs outside the GIL (numpy, torch, LightGBM,
polars), so two concurrent calls use two cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import polars as pl

from recsys.artifacts import artifact_version, load_recommender
from recsys.errors import ArtifactError, RecsysError
from recsys.live import upsert_items, withdraw_items
from recsys.rank.rules import Filters
from recsys.recommender import Recommendation, Recommender
from serving.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Pending:
    rec: Recommender
    key: tuple[Any, ...]
    user_id: str
    recent: list[str]
    future: asyncio.Future[tuple[list[Recommendation], str]]


@dataclass(frozen=True)
class ModelState:
    recommender: Recommender
    model_dir: Path
    artifact_version: str  # digest of the artifact's manifest
    catalogue_changes: int = 0  # entries of the catalogue log applied since the artifact was loaded
    applied: str = "0-0"  # the last applied entry's id

    @property
    def version(self) -> str:
        """What cache keys and responses carry: the artifact and its catalogue changes."""
        if self.catalogue_changes:
            return f"{self.artifact_version}.{self.catalogue_changes}"
        return self.artifact_version


def load_state(folder: str | Path, compile_ranker: bool = False) -> ModelState:
    """Load and smoke-test an artifact; raises ``ArtifactError`` when it cannot serve.
    ``compile_ranker``: the ranker's trees as native code (``Ranker.compile``), same scores."""
    folder = Path(folder).resolve()
    t0 = time.perf_counter()
    rec = load_recommender(folder)
    if compile_ranker:
        rec.ranker.compile()
    try:
        rec.recommend_user(None, k=3, recent=[str(rec.data.items.ids[0])])
    except Exception as exc:
        raise ArtifactError(f"artifact {folder} loads but cannot recommend: {exc}") from exc
    state = ModelState(rec, folder, artifact_version(folder))
    log.info("loaded %s (version %s) in %.1fs", folder, state.version, time.perf_counter() - t0)
    return state


class ModelHolder:
    """The current state, changed only by ``load`` and by replaying the catalogue log.

    Catalogue changes go to a log shared by every worker (a Redis stream, or a list in this process
    without Redis); each worker applies the log's entries in order, so all of them reach the same
    catalogue and the same model version, and a restarted worker replays what was added since its
    artifact was trained.
    """

    def __init__(
        self,
        store: Store,
        model_threads: int = 1,
        model_concurrency: int = 1,
        compile_ranker: bool = False,
        batch_wait_s: float = 0.008,
    ) -> None:
        self.store = store
        self.compile_ranker = compile_ranker
        self.current: ModelState | None = None
        self._write = asyncio.Lock()
        self.limiter = anyio.CapacityLimiter(model_concurrency)
        self.model_threads = model_threads
        self.model_concurrency = model_concurrency
        self.max_batch = 32
        self._pending: list[_Pending] = []
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Adaptive batching (see ``_gather``): how many lists are being asked for at once.
        self.gather_window = 1.0  # seconds over which the peak number of waiting requests is kept
        self.max_gather = batch_wait_s  # longest wait for the rest of a batch (also ≤ half a pass)
        self._waiting = 0  # requests inside ``recommend``
        self._peak = (0, 0.0)  # (most requests inside ``recommend`` at once recently, when seen)
        self._last_pass = 0.0  # seconds the last model pass took
        self._arrived = asyncio.Event()

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a model thread."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def recommend(
        self,
        rec: Recommender,
        user_id: str,
        recent: list[str],
        k: int,
        filters: Filters,
        *,
        with_reasons: bool,
        ranking: str,
    ) -> tuple[list[Recommendation], str]:
        """One user's list. Requests that wait for a model thread are computed together, one batch
        per (recommender, k, filters, reasons, ranking): under load a thread serves several
        users in one pass, which costs far less than one pass each."""
        key = (id(rec), k, filters, with_reasons, ranking)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[Recommendation], str]] = loop.create_future()
        self._pending.append(_Pending(rec, key, user_id, recent, future))
        self._waiting += 1
        now = loop.time()
        if self._waiting >= self._peak[0] or now - self._peak[1] > self.gather_window:
            self._peak = (self._waiting, now)
        self._arrived.set()
        if self._draining < self.model_concurrency:
            self._draining += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            return await future
        finally:
            self._waiting -= 1

    async def _gather(self) -> None:
        """Before a pass, wait briefly for the batch to fill when more requests are expected.

        Clients that each wait for their answer before asking again (a backend's worker pool)
        otherwise settle into groups that alternate: while one group's pass runs, the next group
        queues, so each request waits for a whole pass before its own. When recently as many as
        ``peak`` requests were waiting at once and fewer are queued now, the ones just answered are
        about to ask again: waiting up to ``max_gather`` (and at most half a pass) for them makes
        one pass of all, which costs far less than two. A wait that the batch did not fill lowers
        the expectation to what came. Under steady load from more clients than a batch holds, or
        from one client, nothing waits."""
        loop = asyncio.get_running_loop()
        peak, seen = self._peak
        if loop.time() - seen > self.gather_window:
            return
        deadline = loop.time() + min(self.max_gather, 0.5 * self._last_pass)
        while len(self._pending) < min(peak, self.max_batch):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        if len(self._pending) < min(peak, self.max_batch):
            # Nobody came: fewer clients than the peak remain. Expect what is here now.
            self._peak = (self._waiting, loop.time())

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._gather()
                first = self._pending[0]
                batch = [p for p in self._pending if p.key == first.key][: self.max_batch]
                taken = {id(p) for p in batch}
                self._pending = [p for p in self._pending if id(p) not in taken]
                await self._answer(batch)
        finally:
            self._draining -= 1

    async def _answer(self, batch: list[_Pending]) -> None:
        _, k, filters, with_reasons, ranking = batch[0].key
        rec, requests = batch[0].rec, [(p.user_id, p.recent) for p in batch]
        t0 = time.perf_counter()
        try:
            results = await self.run(
                lambda: rec.recommend_users(requests, k, filters, with_reasons=with_reasons, ranking=ranking)
            )
            self._last_pass = time.perf_counter() - t0
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for p in batch:  # one bad request must not fail the others: answer each alone
                await self._answer([p])
            return
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():  # (a client that went away cancels its future)
                p.future.set_result(result)

    async def load(self, folder: str | Path) -> ModelState:
        async with self._write:
            state = await anyio.to_thread.run_sync(load_state, folder, self.compile_ranker)
            state.recommender.ranker.predict_threads = self.model_threads
            try:
                state = await self._replay(state)
            except StoreUnavailable as exc:
                log.warning("catalogue log unreachable (%s): serving the artifact's catalogue", exc)
            self.current = state
            return state

    async def sync(self) -> ModelState:
        """Apply the log's new entries (every worker polls; a writer calls it after appending)."""
        async with self._write:
            if self.current is None:
                raise ArtifactError("no model is loaded")
            self.current = await self._replay(self.current)
            return self.current

    async def change(self, change: dict[str, Any]) -> ModelState:
        await self.store.append_change(change)
        return await self.sync()

    async def _replay(self, state: ModelState) -> ModelState:
        entries = await self.store.changes_since(state.applied)
        if not entries:
            return state
        rec = await self.run(lambda: apply_changes(state.recommender, [c for _, c in entries]))
        return dataclasses.replace(
            state,
            recommender=rec,
            catalogue_changes=state.catalogue_changes + len(entries),
            applied=entries[-1][0],
        )


def apply_changes(rec: Recommender, changes: list[dict[str, Any]]) -> Recommender:
    """Apply ``{"op": "put", "item": {...}}`` and ``{"op": "withdraw", "item_id": ...}`` in order;
    runs of puts are embedded together. A change that cannot apply is logged and skipped."""
    for op, group in itertools.groupby(changes, key=lambda c: c.get("op")):
        batch = list(group)
        try:
            if op == "put":
                last = {c["item"]["item_id"]: c["item"] for c in batch}  # the latest version of each
                keys = sorted({k for item in last.values() for k in item})
                frame = pl.DataFrame(
                    [{k: item.get(k) for k in keys} for item in last.values()],
                    schema=dict.fromkeys(keys, pl.String),
                )
                rec = upsert_items(rec, frame)
            elif op == "withdraw":
                ids = [c["item_id"] for c in batch]
                known = [i for i, r in zip(ids, rec.data.items.index(ids), strict=True) if r >= 0]
                rec = withdraw_items(rec, known) if known else rec
            else:
                log.warning("unknown catalogue change %r skipped", op)
        except RecsysError as exc:
            log.warning("catalogue change skipped (%d %s entries): %s", len(batch), op, exc)
    return rec
