"""``recsys ab simulate``: held-out users' traffic through the running API, with a click model.

Each held-out user (the test split: their last event is hidden from the served model) asks the
service for ``k`` items once. They examine position ``p`` (0 = top) with probability
``1 / (p + 1) ** examine_decay`` (position bias) and click an examined item with probability 1 if
it is the item they really went to next, and ``noise_click`` otherwise. A click on their real next
item becomes a purchase with probability ``buy_given_click`` (``noise_buy`` for other items), at the
item's price. Clicks and purchases go back through ``POST /v1/events`` with the response's request
id, so the service logs exposures and outcomes exactly as it would for a shop.

The reference data has no prices, so each item gets a fixed price drawn once from a log-normal
(median 20, spread as in retail catalogues) seeded by its id: revenue figures are simulated.

``pre_period``: each user's earlier events (their training history) are written to the outcome log
as purchases before the run starts, timestamped an hour apart before it: the pre-period CUPED uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.ab.log import outcome
from recsys.data.dataset import Dataset
from recsys.data.split import make_split
from recsys.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    api: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    users: int = 0  # held-out users to simulate (0: all)
    k: int = 10
    concurrency: int = 4
    seed: int = 0
    examine_decay: float = 1.0
    noise_click: float = 0.005
    buy_given_click: float = 0.5
    noise_buy: float = 0.05
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.k < 1 or self.concurrency < 1 or self.users < 0:
            raise ConfigError("k and concurrency must be at least 1, users at least 0")
        for name in ("noise_click", "buy_given_click", "noise_buy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1]")


def price(item_id: str) -> float:
    """A simulated price, fixed per item (log-normal, median 20)."""
    u = int.from_bytes(hashlib.blake2b(f"price:{item_id}".encode(), digest_size=8).digest(), "big") / 2.0**64
    z = math.sqrt(2) * _erfinv(2 * min(max(u, 1e-12), 1 - 1e-12) - 1)
    return round(20.0 * math.exp(0.9 * z), 2)


def _erfinv(y: float) -> float:
    from scipy.special import erfinv

    return float(erfinv(y))


def held_out(dataset: Dataset, users: int = 0, seed: int = 0) -> pl.DataFrame:
    """user_id, history (item ids, oldest first) and next_items (the test split's held-out events:
    the last one per user, or every event of a temporal split's test window) of the test split's
    users; a seeded sample of ``users`` of them (0: all), in a seeded random order."""
    split = make_split(dataset, "test")
    hist = (
        split.train.sort("user_id", "seq")
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").alias("history"))
    )
    nexts = split.targets.group_by("user_id", maintain_order=True).agg(
        pl.col("item_id").unique().alias("next_items")
    )
    frame = nexts.sort("user_id").join(hist, on="user_id", how="left")
    frame = frame.with_columns(pl.col("history").fill_null([]))
    order = np.random.default_rng(seed).permutation(frame.height)
    frame = frame[order]
    return frame.head(users) if users else frame


def pre_period_records(users: pl.DataFrame, before: float) -> list[dict[str, Any]]:
    """Each user's history as purchases, an hour apart, ending an hour before ``before``."""
    out = []
    for user_id, history in users.select("user_id", "history").iter_rows():
        n = len(history)
        for i, item in enumerate(history):
            out.append(outcome(user_id, item, "purchase", revenue=price(item), ts=before - (n - i) * 3600.0))
    return out


def clicks_for(
    items: list[str], targets: set[str], cfg: SimulationConfig, rng: np.random.Generator
) -> list[tuple[str, str, float | None]]:
    """(item, type, revenue) events a user whose real next items are ``targets`` makes on ``items``."""
    events: list[tuple[str, str, float | None]] = []
    for p, item in enumerate(items):
        examined = rng.random() < 1.0 / (p + 1) ** cfg.examine_decay
        relevant = item in targets
        if not examined or rng.random() >= (1.0 if relevant else cfg.noise_click):
            continue
        events.append((item, "click", None))
        if rng.random() < (cfg.buy_given_click if relevant else cfg.noise_buy):
            events.append((item, "purchase", price(item)))
    return events


def _user_rng(seed: int, user_id: str) -> np.random.Generator:
    h = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")
    return np.random.default_rng([seed, h])


async def simulate(users: pl.DataFrame, cfg: SimulationConfig, progress: bool = True) -> dict[str, Any]:
    """Send every user's request and events; returns what the client saw, per variant."""
    import httpx
    from tqdm.auto import tqdm

    headers = {"X-API-Key": cfg.api_key} if cfg.api_key else {}
    stats: dict[str, dict[str, float]] = {}
    failures: dict[str, int] = {}
    latencies: list[float] = []
    sem = asyncio.Semaphore(cfg.concurrency)
    bar = tqdm(total=users.height, desc="simulated users", disable=not progress)

    def count(variant: str, key: str, by: float = 1.0) -> None:
        row = stats.setdefault(variant, {"users": 0, "hits": 0, "clicks": 0, "purchases": 0, "revenue": 0.0})
        row[key] += by

    async def one(client: httpx.AsyncClient, user_id: str, targets: set[str]) -> None:
        async with sem:
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/recommendations", json={"user_id": user_id, "k": cfg.k})
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                bar.update()
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                failures[str(r.status_code)] = failures.get(str(r.status_code), 0) + 1
                bar.update()
                return
            body = r.json()
            variant = body.get("variant") or "(no experiment)"
            items = [i["item_id"] for i in body["items"]]
            count(variant, "users")
            count(variant, "hits", float(any(i in targets for i in items)))
            events = clicks_for(items, targets, cfg, _user_rng(cfg.seed, user_id))
            if events:
                payload = {
                    "events": [
                        {"user_id": user_id, "item_id": item, "type": kind, "request_id": body["request_id"]}
                        | ({"revenue": revenue} if revenue is not None else {})
                        for item, kind, revenue in events
                    ]
                }
                e = await client.post("/v1/events", json=payload, headers=headers)
                if e.status_code != 200:
                    failures[f"events {e.status_code}"] = failures.get(f"events {e.status_code}", 0) + 1
                else:
                    for _, kind, revenue in events:
                        count(variant, "clicks" if kind == "click" else "purchases")
                        if revenue is not None:
                            count(variant, "revenue", revenue)
            bar.update()

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    async with httpx.AsyncClient(base_url=cfg.api, timeout=cfg.timeout_s, limits=limits) as client:
        ready = await client.get("/readyz")
        if ready.status_code != 200:
            raise ConfigError(f"{cfg.api}/readyz answered {ready.status_code}: is the service up?")
        await asyncio.gather(
            *(one(client, u, set(t)) for u, t in users.select("user_id", "next_items").iter_rows())
        )
    bar.close()
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "config": asdict(cfg) | {"api_key": "***" if cfg.api_key else None},
        "users": users.height,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed else None,
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
        "failures": failures,
        "by_variant": stats,
    }
