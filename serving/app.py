"""The FastAPI application: ``create_app()`` wires settings, the lifespan, middleware and routes.

Run it with ``recsys serve --model-dir DIR`` (or ``uvicorn serving.app:create_app --factory``).
Nothing connects or loads at import time: the model and the cache open in the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.ab.experiments import Experiments, load_experiments
from recsys.errors import ArtifactError, ConfigError
from serving.ablog import ExperimentLog
from serving.deps import Service, ServiceDep
from serving.middleware import Metrics, ServiceMiddleware
from serving.model import ModelHolder
from serving.routes import router
from serving.schemas import Health, Problem, Ready, RecommendationsRequest
from serving.settings import Settings, get_settings
from serving.store import MemoryStore, RedisStore, StoreUnavailable, open_store

log = logging.getLogger("serving")


def _field(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


def _problem(
    request: Request,
    status: int,
    error: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    rid = getattr(request.state, "request_id", None)
    body = Problem(error=error, detail=detail or [], request_id=rid)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    detail = [{"field": _field(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors()]
    return _problem(request, 422, "invalid request", detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's own body decoding: the same 422 as every other invalid request body.
        return _problem(request, 422, "invalid request", [{"field": "body", "reason": "not valid JSON"}])
    return _problem(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request %s failed", getattr(request.state, "request_id", "?"))
    return _problem(request, 500, f"internal error ({type(exc).__name__}); see the service log")


def _configure_threads(n: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


async def _variant_holders(
    experiments: Experiments,
    store: MemoryStore | RedisStore,
    threads: int,
    concurrency: int,
    limiter: anyio.CapacityLimiter,
    compile_ranker: bool = False,
    batch_wait_s: float = 0.008,
) -> dict[str, ModelHolder]:
    """A holder per other artifact the variants name, sharing the main model's thread limit."""
    holders: dict[str, ModelHolder] = {}
    for e in experiments:
        for v in e.variants:
            if v.model_dir is None or str(v.model_dir) in holders:
                continue
            h = ModelHolder(store, threads, concurrency, compile_ranker, batch_wait_s)
            h.limiter = limiter
            state = await h.load(v.model_dir)
            if v.ranking != "hybrid" and v.ranking not in state.recommender.scorers:
                raise ConfigError(
                    f"experiment {e.name!r} variant {v.name!r}: ranking {v.ranking!r} is not a scorer "
                    f"of {v.model_dir}"
                )
            holders[str(v.model_dir)] = h
    return holders


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _configure_threads(settings.model_threads)
        store = open_store(
            settings.redis_url,
            prefix=settings.key_prefix,
            ttl_s=settings.cache_ttl_s,
            max_entries=settings.memory_cache_entries,
            recent_limit=settings.recent_limit,
            recent_ttl_s=settings.recent_ttl_s,
            timeout_s=settings.redis_timeout_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
        )
        holder = ModelHolder(
            store,
            settings.model_threads,
            settings.model_concurrency,
            settings.compile_ranker,
            settings.batch_wait_ms / 1000,
        )
        if settings.model_dir is None:
            raise ArtifactError("no model to serve: set RECSYS_MODEL_DIR or pass --model-dir")
        experiments = load_experiments(settings.experiments_file) if settings.experiments_file else None
        await holder.load(settings.model_dir)
        variant_holders: dict[str, ModelHolder] = {}
        ablog = None
        if experiments is not None:
            assert holder.current is not None
            experiments.check_rankings(holder.current.recommender.scorers, str(settings.model_dir))
            variant_holders = await _variant_holders(
                experiments,
                store,
                settings.model_threads,
                settings.model_concurrency,
                holder.limiter,
                settings.compile_ranker,
                settings.batch_wait_ms / 1000,
            )
            ablog = ExperimentLog(
                redis_client=store.client if isinstance(store, RedisStore) else None,
                prefix=settings.key_prefix,
                log_dir=settings.ab_log_dir,
                max_buffer=settings.ab_buffer_records,
                timeout_s=settings.redis_timeout_s,
                registry=metrics.registry,
            )
            log.info(
                "experiments %s from %s; records to %s",
                [e.name for e in experiments],
                settings.experiments_file,
                ablog.backend,
            )
        app.state.service = Service(settings, holder, store, metrics, experiments, ablog, variant_holders)
        if not await store.check():
            log.warning("redis at %s unreachable at start: serving degraded", settings.redis_url)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def reload_on_signal() -> None:
            current = holder.current
            try:
                await holder.load(current.model_dir if current else settings.model_dir)  # type: ignore[arg-type]
            except Exception:
                log.exception("SIGHUP reload refused; the old model keeps serving")

        def on_hup() -> None:
            task = loop.create_task(reload_on_signal())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        with suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP
            loop.add_signal_handler(signal.SIGHUP, on_hup)

        async def follow_catalogue() -> None:
            """Other workers' catalogue changes, applied here within a poll interval."""
            while True:
                await asyncio.sleep(settings.catalogue_poll_s)
                try:
                    for h in (holder, *variant_holders.values()):
                        await h.sync()
                except StoreUnavailable:
                    pass  # degraded: retried at the next poll
                except Exception:
                    log.exception("applying catalogue changes failed")

        follower = loop.create_task(follow_catalogue())
        if ablog is not None:
            ablog.start(settings.ab_flush_s)
        try:
            yield
        finally:
            follower.cancel()
            if ablog is not None:
                await ablog.close()  # stops the writer after its write in flight, then writes the rest
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            await store.close()

    app = FastAPI(
        title="recsys",
        version="1",
        summary="Recommendations, reranking, similar items, new items and events for an e-commerce backend.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(router)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        """The process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Ready, tags=["ops"], responses={503: {"model": Ready}})
    async def readyz(svc: ServiceDep) -> Response:
        """Ready when a model is loaded; degraded (still 200) when Redis is configured but unreachable."""
        store = svc.store
        reachable = await store.check()
        state = svc.holder.current
        status: Literal["ready", "degraded", "loading"] = (
            "loading" if state is None else ("ready" if reachable else "degraded")
        )
        body = Ready(
            status=status,
            model_version=None if state is None else state.version,
            cache={"backend": store.backend, "reachable": reachable},
        )
        return JSONResponse(body.model_dump(), status_code=503 if state is None else 200)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus(svc: ServiceDep) -> Response:
        """Prometheus text format: latency histograms, cache hits and misses, errors, by endpoint."""
        svc.metrics.degraded.set(1.0 if svc.store.degraded else 0.0)
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        """The generated spec plus the request models of endpoints that parse their own body."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            extra = RecommendationsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(extra.pop("$defs", {}))
            schemas["RecommendationsRequest"] = extra
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app
