"""The served model: one ``Recommender`` behind a reference that changes atomically.

Readers take ``holder.current`` once per request and use that object throughout, so a reload or
a catalogue change never shows a request half of one state. Writers (reload, new items) build the
next state off the event loop, under one lock, and swap the reference when it is complete; a model
that fails to load or to answer a smoke request is refused and the old one keeps serving.

Model calls run in worker threads, at most ``model_threads`` at once (torch and BLAS use as many
threads each), so cache hits keep being answered on the event loop while a list is computed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import polars as pl

from recsys.artifacts import MANIFEST, load_recommender
from recsys.errors import ArtifactError
from recsys.live import upsert_items, withdraw_items
from recsys.recommender import Recommender

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelState:
    recommender: Recommender
    model_dir: Path
    artifact_version: str  # digest of the artifact's manifest
    catalogue_changes: int = 0  # items added, changed or withdrawn since it was loaded

    @property
    def version(self) -> str:
        """What cache keys and responses carry: the artifact and its catalogue changes."""
        if self.catalogue_changes:
            return f"{self.artifact_version}.{self.catalogue_changes}"
        return self.artifact_version


def artifact_version(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()[:12]


def load_state(folder: str | Path) -> ModelState:
    """Load and smoke-test an artifact; raises ``ArtifactError`` when it cannot serve."""
    folder = Path(folder).resolve()
    t0 = time.perf_counter()
    rec = load_recommender(folder)
    try:
        rec.recommend_user(None, k=3, recent=[str(rec.data.items.ids[0])])
    except Exception as exc:
        raise ArtifactError(f"artifact {folder} loads but cannot recommend: {exc}") from exc
    state = ModelState(rec, folder, artifact_version(folder))
    log.info("loaded %s (version %s) in %.1fs", folder, state.version, time.perf_counter() - t0)
    return state


class ModelHolder:
    def __init__(self, model_threads: int = 1) -> None:
        self.current: ModelState | None = None
        self._write = asyncio.Lock()
        self.limiter = anyio.CapacityLimiter(model_threads)

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a model thread."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def load(self, folder: str | Path) -> ModelState:
        async with self._write:
            state = await anyio.to_thread.run_sync(load_state, folder)
            self.current = state
            return state

    async def change_catalogue(self, change: Callable[[Recommender], Recommender]) -> ModelState:
        async with self._write:
            old = self.current
            if old is None:
                raise ArtifactError("no model is loaded")
            rec = await self.run(lambda: change(old.recommender))
            self.current = ModelState(rec, old.model_dir, old.artifact_version, old.catalogue_changes + 1)
            return self.current

    async def upsert(self, item: dict[str, str | None]) -> ModelState:
        frame = pl.DataFrame([item], schema={k: pl.String for k in item})
        return await self.change_catalogue(lambda rec: upsert_items(rec, frame))

    async def withdraw(self, item_id: str) -> ModelState:
        return await self.change_catalogue(lambda rec: withdraw_items(rec, [item_id]))
