"""Dependencies: the objects opened in the lifespan, reached through one ``Service`` dependency.

One dependency (not one per object) keeps FastAPI's per-request resolution cheap on the cached
path, where it is a visible share of the time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from recsys.ab.experiments import Experiments
from serving.ablog import ExperimentLog
from serving.middleware import Metrics
from serving.model import ModelHolder, ModelState
from serving.settings import Settings
from serving.store import MemoryStore, RedisStore


@dataclass(frozen=True)
class Service:
    settings: Settings
    holder: ModelHolder
    store: MemoryStore | RedisStore
    metrics: Metrics
    experiments: Experiments | None = None
    ablog: ExperimentLog | None = None
    # Variants that serve another artifact: its folder (as written in the experiments file) → holder.
    variant_holders: dict[str, ModelHolder] = field(default_factory=dict)

    @property
    def model(self) -> ModelState:
        """The current model state (503 while none is loaded); take it once per request."""
        state = self.holder.current
        if state is None:
            raise HTTPException(503, "the model is still loading")
        return state


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


async def get_service(request: Request) -> Service:
    return service(request)


def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


async def require_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="an API key from the settings")] = None,
) -> None:
    """Write and admin endpoints: the key must equal one of the settings' keys (constant-time)."""
    keys = service(request).settings.api_keys
    if not keys:
        raise HTTPException(403, "writes are disabled: no API keys configured (set RECSYS_API_KEYS)")
    given = (x_api_key or "").encode()
    # Compare against every key, without stopping at a match, so timing says nothing about which.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise HTTPException(401, "missing or wrong X-API-Key header")


ServiceDep = Annotated[Service, Depends(get_service)]
ApiKey = Depends(require_key)
