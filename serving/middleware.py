"""Plain ASGI middleware (no per-request task overhead): request ids, body limit, metrics.

Prometheus metrics are per worker process; with several workers set ``PROMETHEUS_MULTIPROC_DIR``
(see prometheus_client's multiprocess mode) or scrape each worker.
"""

from __future__ import annotations

import json
import time
import uuid
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


class ServiceMiddleware:
    """Gives each request an id (``X-Request-ID`` if the caller sent a sane one), refuses bodies
    over ``max_body_bytes`` with 413, and records latency, status and errors per endpoint."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
                request_id = value.decode()
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                for message in _problem(413, f"body over {self.max_body_bytes} bytes", request_id):
                    await send(message)
                self._observe(scope, "POST", 413, t0)
                return
        seen = 0

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
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            self._observe(scope, scope["method"], status, t0)

    def _observe(self, scope: Scope, method: str, status: int, t0: float) -> None:
        route: Any = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        self.metrics.latency.labels(endpoint, method, str(status)).observe(time.perf_counter() - t0)
        if status >= 400:
            self.metrics.errors.labels(endpoint, str(status)).inc()
