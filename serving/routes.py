"""The ``/v1`` endpoints: recommendations, rank, similar items, catalogue changes, events, reload."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import timezone
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from recsys.ab.experiments import Experiment, Variant
from recsys.ab.log import exposure, outcome
from recsys.cache_keys import list_payload, params_field
from recsys.errors import ArtifactError, RecsysError
from recsys.live import is_available, similar_items
from recsys.rank.rules import Filters
from recsys.recommender import Recommendation
from serving.deps import ApiKey, Service, ServiceDep, request_id, service
from serving.schemas import (
    EventIn,
    EventsRequest,
    EventsResponse,
    FiltersIn,
    Id,
    ItemIn,
    ItemOut,
    Problem,
    RankRequest,
    RankResponse,
    RecommendationsRequest,
    RecommendationsResponse,
    ReloadRequest,
    ReloadResponse,
    SimilarItemOut,
    SimilarResponse,
)
from serving.store import StoreUnavailable

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 404, 409, 413, 422, 503)
}
router = APIRouter(prefix="/v1", responses=ERRORS)
RETRY = {"Retry-After": "1"}  # a 503 while the shared store is away: it is retried with back-off
JSON = "application/json"


def too_long(field: tuple[str, ...], value: Sequence[object] | int, limit: int, what: str) -> dict[str, Any]:
    return {
        "type": "too_long",
        "loc": ("body", *field),
        "msg": f"at most {limit} {what} (got {value if isinstance(value, int) else len(value)})",
        "input": None,
    }


def check_limits(*checks: tuple[tuple[str, ...], Sequence[object] | None, int]) -> None:
    """The operator's limits (settings) on list lengths, as 422s naming each field:
    ``(field path, the list or None, the most ids allowed)``."""
    errors = [
        too_long(field, value, limit, "ids")
        for field, value, limit in checks
        if value is not None and len(value) > limit
    ]
    if errors:
        raise RequestValidationError(errors)


def _items(recs: list[Recommendation]) -> list[dict[str, Any]]:
    return [{"item_id": r.item_id, "score": round(r.score, 6), "reasons": r.reasons} for r in recs]


def _event_time(event: EventIn) -> float:
    """Events in time order (naive timestamps read as UTC); events without one keep arrival order, last."""
    if event.timestamp is None:
        return float("inf")
    return event.timestamp.replace(tzinfo=event.timestamp.tzinfo or timezone.utc).timestamp()


def _respond(request_id: str, cached: bool, payload: bytes, extra: str = "") -> Response:
    head = f'{{"request_id":"{request_id}","cached":{"true" if cached else "false"},{extra}'.encode()
    return Response(head + payload[1:], media_type=JSON)


# The body is parsed and validated in one pass (pydantic's JSON mode) instead of FastAPI's decode
# then validate: a tenth of a cache hit's time. The spec still shows the model (``serving.app``).
RECOMMENDATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecommendationsRequest"}}},
    }
}


async def parse_body(request: Request, model: type[RecommendationsRequest]) -> RecommendationsRequest:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        raise RequestValidationError(errors) from None


@router.post("/recommendations", response_model=RecommendationsResponse, openapi_extra=RECOMMENDATIONS_BODY)
async def recommendations(request: Request) -> Response:
    """Top-``k`` items for a user, with scores and reasons; cached per user and parameters. A user
    enrolled in an A/B experiment gets their variant's list, named in the response and logged."""
    t_start = time.perf_counter()
    body = await parse_body(request, RecommendationsRequest)
    svc = service(request)  # not a dependency: on the cache-hit path each one costs a visible share
    settings, store, holder, metrics = svc.settings, svc.store, svc.holder, svc.metrics
    rid = request_id(request)
    if body.k > settings.max_k:
        raise RequestValidationError([too_long(("k",), body.k, settings.max_k, "items")])
    assigned = svc.experiments.assign(body.user_id) if svc.experiments is not None else None
    variant = assigned[1] if assigned else None
    if variant is not None and variant.model_dir is not None:
        holder = svc.variant_holders[str(variant.model_dir)]
    model = holder.current
    if model is None:
        raise HTTPException(503, "the model is still loading")
    f = body.filters
    if (
        variant is not None
        and variant.max_per_category is not None
        and (f is None or f.max_per_category is None)
    ):
        f = (f or FiltersIn()).model_copy(update={"max_per_category": variant.max_per_category})
    if f is None and not body.context:  # the plain request (and what batch scoring precomputes)
        filters_dict: dict[str, Any] = {}
        field = f"k={body.k}"
    else:
        f = f or FiltersIn()
        ids = settings.max_filter_ids
        check_limits(
            (("context",), body.context, settings.max_context),
            (("filters", "include_items"), f.include_items, ids),
            (("filters", "exclude_items"), f.exclude_items, ids),
            (("filters", "include_categories"), f.include_categories, ids),
            (("filters", "exclude_categories"), f.exclude_categories, ids),
        )
        filters_dict = f.model_dump()
        shown = {k: v for k, v in filters_dict.items() if k != "exclude_seen"}
        field = params_field(body.k, shown, body.context) + ("" if f.exclude_seen else ":seen")
    head = ""
    if assigned is not None:
        experiment, variant = assigned
        field += f"|{experiment.name}={variant.name}"
        head = f'"experiment":"{experiment.name}","variant":"{variant.name}",'
    version = model.version
    cached = await store.get_list(version, body.user_id, field)
    if cached is not None:
        metrics.cache_hit.inc()
        _expose(svc, assigned, body.user_id, rid, cached, version, True, t_start)
        return _respond(rid, True, cached, head)
    metrics.cache_miss.inc()
    recent = [*await store.recent(body.user_id), *body.context]
    rec = model.recommender
    filters = Filters(**filters_dict)
    ranking = variant.ranking if variant is not None else "hybrid"
    t0 = time.perf_counter()
    try:
        recs, basis = await holder.recommend(
            rec, body.user_id, recent, body.k, filters, with_reasons=settings.with_reasons, ranking=ranking
        )
    except Exception:
        _expose(svc, assigned, body.user_id, rid, None, version, False, t_start)
        raise
    metrics.model_seconds.labels("recommendations").observe(time.perf_counter() - t0)
    payload = list_payload(recs, version, basis)
    await store.put_list(version, body.user_id, field, payload)
    _expose(svc, assigned, body.user_id, rid, payload, version, False, t_start, recs, basis)
    return _respond(rid, False, payload, head)


def _expose(
    svc: Service,
    assigned: tuple[Experiment, Variant] | None,
    user_id: str,
    rid: str,
    payload: bytes | None,
    version: str,
    cached: bool,
    t_start: float,
    recs: list[Recommendation] | None = None,
    basis: str | None = None,
) -> None:
    """One exposure record per list served in an experiment (``payload`` None: the request failed)."""
    if assigned is None or svc.ablog is None:
        return
    if payload is not None and recs is None:  # a cached list: its ids and basis from the payload
        body = json.loads(payload)
        items, basis = [i["item_id"] for i in body["items"]], body["basis"]
    else:
        items = [r.item_id for r in recs or []]
    svc.ablog.add(
        "exposures",
        exposure(
            assigned[0].name,
            assigned[1].name,
            user_id,
            rid,
            items,
            model_version=version,
            basis=basis or "",
            cached=cached,
            latency_ms=(time.perf_counter() - t_start) * 1000,
            event="exposure" if payload is not None else "error",
        ),
    )


@router.post("/rank", response_model=RankResponse)
async def rank(body: RankRequest, request: Request, svc: ServiceDep) -> RankResponse:
    """Your candidate ids reordered for the user; unknown and withdrawn ids are reported, not fatal."""
    settings, store, holder, metrics = svc.settings, svc.store, svc.holder, svc.metrics
    model, rid = svc.model, request_id(request)
    check_limits(
        (("item_ids",), body.item_ids, settings.max_candidates),
        (("context",), body.context, settings.max_context),
    )
    rec = model.recommender
    ids = list(dict.fromkeys(body.item_ids))  # first occurrence of each id
    rows = rec.data.items.index(ids)
    ok = is_available(rec, rows.copy())
    unknown = [i for i, r in zip(ids, rows, strict=True) if r < 0]
    withdrawn = [i for i, r, good in zip(ids, rows, ok, strict=True) if r >= 0 and not good]
    known = [i for i, good in zip(ids, ok, strict=True) if good]
    recent = [*await store.recent(body.user_id), *body.context]
    t0 = time.perf_counter()
    ranked = await holder.run(lambda: rec.rank(body.user_id, known, recent=recent)) if known else []
    metrics.model_seconds.labels("rank").observe(time.perf_counter() - t0)
    return RankResponse.model_validate(
        {
            "request_id": rid,
            "model_version": model.version,
            "items": _items(ranked),
            "unknown_items": unknown,
            "unavailable_items": withdrawn,
        }
    )


@router.get("/items/{item_id}/similar", response_model=SimilarResponse)
async def similar(
    item_id: Id,
    request: Request,
    svc: ServiceDep,
    k: int = Query(10, ge=1, description="how many (at most max_k)"),
    by: Literal["both", "text", "covisit"] = Query(
        "both", description="text: substitutes by description; covisit: seen together; both: fused"
    ),
) -> SimilarResponse:
    """Items like this one: text similarity and co-visitation, fused by reciprocal rank."""
    settings, holder, model, rid = svc.settings, svc.holder, svc.model, request_id(request)
    if k > settings.max_k:
        raise RequestValidationError(
            [{**too_long(("k",), k, settings.max_k, "items"), "loc": ("query", "k")}]
        )
    rec = model.recommender
    if rec.data.items.index([item_id])[0] < 0:
        raise HTTPException(404, f"unknown item {item_id!r}")
    found = await holder.run(lambda: similar_items(rec, item_id, k, by))
    return SimilarResponse(
        request_id=rid,
        model_version=model.version,
        item_id=item_id,
        items=[SimilarItemOut(**vars(s)) for s in found],
    )


@router.put("/items/{item_id}", response_model=ItemOut, dependencies=[ApiKey])
async def put_item(item_id: Id, body: ItemIn, svc: ServiceDep) -> ItemOut:
    """Add or change an item: its text is embedded now and it is recommendable at once."""
    model, holder = svc.model, svc.holder
    known = bool(model.recommender.data.items.index([item_id])[0] >= 0)
    try:
        state = await holder.change({"op": "put", "item": {"item_id": item_id, **body.model_dump()}})
    except StoreUnavailable as exc:
        raise HTTPException(503, f"catalogue changes need the shared store: {exc}; retry", RETRY) from exc
    return ItemOut(item_id=item_id, status="updated" if known else "created", model_version=state.version)


@router.delete("/items/{item_id}", response_model=ItemOut, dependencies=[ApiKey])
async def delete_item(item_id: Id, svc: ServiceDep) -> ItemOut:
    """Withdraw an item: it is never recommended again (histories that name it still count)."""
    model, holder = svc.model, svc.holder
    if model.recommender.data.items.index([item_id])[0] < 0:
        raise HTTPException(404, f"unknown item {item_id!r}")
    try:
        state = await holder.change({"op": "withdraw", "item_id": item_id})
    except StoreUnavailable as exc:
        raise HTTPException(503, f"catalogue changes need the shared store: {exc}; retry", RETRY) from exc
    return ItemOut(item_id=item_id, status="withdrawn", model_version=state.version)


@router.post("/events", response_model=EventsResponse, dependencies=[ApiKey])
async def events(body: EventsRequest, svc: ServiceDep) -> EventsResponse:
    """Views, clicks, carts, purchases: they join each user's recent history at once and drop the
    user's cached lists, so the next response reflects them."""
    settings, store, model = svc.settings, svc.store, svc.model
    check_limits((("events",), body.events, settings.max_events))
    by_user: dict[str, list[str]] = {}
    for event in sorted(body.events, key=_event_time):
        by_user.setdefault(event.user_id, []).append(event.item_id)
    await store.add_recent(model.version, by_user)
    if svc.ablog is not None:
        for e in body.events:
            ts = _event_time(e) if e.timestamp is not None else None
            svc.ablog.add(
                "outcomes",
                outcome(e.user_id, e.item_id, e.type, revenue=e.revenue, request_id=e.request_id, ts=ts),
            )
    ids = list(dict.fromkeys(e.item_id for e in body.events))
    rows = model.recommender.data.items.index(ids)
    return EventsResponse(
        accepted=len(body.events), unknown_items=[i for i, r in zip(ids, rows, strict=True) if r < 0]
    )


@router.post("/admin/reload", response_model=ReloadResponse, dependencies=[ApiKey])
async def reload(body: ReloadRequest, svc: ServiceDep) -> ReloadResponse:
    """Load an artifact (default: the current folder again) and swap it in atomically; a bad one
    is refused with 409 and the old model keeps serving."""
    holder, settings = svc.holder, svc.settings
    folder = body.model_dir or (holder.current.model_dir if holder.current else settings.model_dir)
    if folder is None:
        raise HTTPException(422, "no model_dir given and none configured")
    t0 = time.perf_counter()
    try:
        state = await holder.load(folder)
    except (ArtifactError, RecsysError, OSError) as exc:
        raise HTTPException(409, f"refused {folder}: {exc}") from exc
    return ReloadResponse(
        model_version=state.version,
        model_dir=str(state.model_dir),
        seconds=round(time.perf_counter() - t0, 3),
    )
