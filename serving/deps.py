"""Dependencies: the heavy objects opened in the lifespan, reached by type-annotated aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from serving.middleware import Metrics
from serving.model import ModelHolder, ModelState
from serving.settings import Settings
from serving.store import MemoryStore, RedisStore


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_model(request: Request) -> ModelState:
    state = (await get_holder(request)).current
    if state is None:
        raise HTTPException(503, "the model is still loading")
    return state


async def get_store(request: Request) -> MemoryStore | RedisStore:
    store: MemoryStore | RedisStore = request.app.state.store
    return store


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


async def require_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="an API key from the settings")] = None,
) -> None:
    """Write and admin endpoints: the key must equal one of the settings' keys (constant-time)."""
    keys = (await get_app_settings(request)).api_keys
    if not keys:
        raise HTTPException(403, "writes are disabled: no API keys configured (set RECSYS_API_KEYS)")
    given = (x_api_key or "").encode()
    # Compare against every key, without stopping at a match, so timing says nothing about which.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise HTTPException(401, "missing or wrong X-API-Key header")


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelDep = Annotated[ModelState, Depends(get_model)]
StoreDep = Annotated[MemoryStore | RedisStore, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RequestId = Annotated[str, Depends(request_id)]
ApiKey = Depends(require_key)
