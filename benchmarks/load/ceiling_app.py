"""The ceiling for the load benchmark: a minimal FastAPI endpoint that parses the same request body
and returns one value read from Redis, nothing else. Our cached path is reported as a share of it.

    RECSYS_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn ceiling_app:app --app-dir benchmarks/load
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

KEY = "recsys-bench:ceiling"


class Body(BaseModel):
    user_id: str
    k: int = 10


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = aioredis.Redis.from_url(os.environ["RECSYS_REDIS_URL"])
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/recommendations")
async def ceiling(body: Body, request: Request) -> Response:
    value = await request.app.state.redis.hget(KEY, "k=10")
    return Response(value, media_type="application/json")
