"""Plain ASGI middleware (no per-request task overhead): request ids, body limit, metrics.

Prometheus metrics are per worker process; with several workers set ``PROMETHEUS_MULTIPROC_DIR``
(see prometheus_client's multiprocess mode) or scrape each worker.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "recsys_request_seconds",
            "request latency by endpoint",
            ["endpoint", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "recsys_cache_total", "list cache lookups", ["endpoint", "result"], registry=self.registry
        )
        self.cache_hit = self.cache.labels("recommendations", "hit")
        self.cache_miss = self.cache.labels("recommendations", "miss")
        self.errors = Counter(
            "recsys_errors_total", "error responses", ["endpoint", "kind"], registry=self.registry
        )
        self.degraded = Gauge("recsys_cache_degraded", "1 while Redis is unreachable", registry=self.registry)
        self.model_seconds = Histogram(
            "recsys_model_seconds",
            "model computation per request",
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )


def _problem(status: int, error: str, request_id: str) -> list[Message]:
    body = json.dumps({"error": error, "detail": [], "request_id": request_id}).encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())],
        },
        {"type": "http.response.body", "body": body},
    ]


_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")  # a caller's X-Request-ID is echoed only if plain


class ServiceMiddleware:
    """Gives each request an id (``X-Request-ID`` if the caller sent a plain one), refuses bodies
    over ``max_body_bytes`` with 413, and records latency, status and errors per endpoint."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self._ids = itertools.count()
        self._id_prefix = os.urandom(6).hex()  # unique per process; a counter after it per request
        self._observers: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id, too_big = "", False
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _SAFE_ID.fullmatch(value):
                request_id = value.decode()
            elif name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                too_big = True
        request_id = request_id or f"{self._id_prefix}{next(self._ids):010x}"
        scope.setdefault("state", {})["request_id"] = request_id
        if too_big:
            for message in _problem(413, f"body over {self.max_body_bytes} bytes", request_id):
                await send(message)
            self._observe(scope, scope["method"], 413, t0)
            return
        status = 500
        seen = 0
        header = (b"x-request-id", request_id.encode())

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:  # a chunked body that outgrew the limit
                    raise HTTPException(413, f"body over {self.max_body_bytes} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self._observe(scope, scope["method"], status, t0)

    def _observe(self, scope: Scope, method: str, status: int, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        route: Any = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        key = (endpoint, method, status)
        observer = self._observers.get(key)
        if observer is None:
            observer = self._observers[key] = self.metrics.latency.labels(endpoint, method, str(status))
        observer.observe(elapsed)
        if status >= 400:
            self.metrics.errors.labels(endpoint, str(status)).inc()
