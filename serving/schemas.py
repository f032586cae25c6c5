"""Request and response models: what the OpenAPI spec shows and what requests are checked against.

Hard bounds live here (they also protect the parser); the operator's tighter limits (``max_k``,
list lengths) come from the settings and are checked per request in ``serving.limits``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, Field(max_length=20_000)]
HARD_MAX_LIST = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(Strict):
    exclude_seen: bool = Field(default=True, description="leave out items the user already has")
    include_categories: list[Text] | None = Field(default=None, max_length=HARD_MAX_LIST)
    exclude_categories: list[Text] = Field(default_factory=list, max_length=HARD_MAX_LIST)
    include_items: list[Id] | None = Field(default=None, max_length=HARD_MAX_LIST)
    exclude_items: list[Id] = Field(default_factory=list, max_length=HARD_MAX_LIST)
    max_per_category: int | None = Field(default=None, ge=1, description="diversity cap per category")


class RecommendationsRequest(Strict):
    user_id: Id = Field(description="your user id; an unknown one gets the context's or popular items")
    k: int = Field(default=10, ge=1, le=HARD_MAX_LIST, description="list length (at most max_k)")
    filters: FiltersIn | None = Field(default=None, description="rules applied after ranking")
    context: list[Id] = Field(
        default_factory=list,
        max_length=HARD_MAX_LIST,
        description="recent item ids of this session, oldest first (anonymous or cold users)",
    )


class ScoredItem(BaseModel):
    item_id: str
    score: float
    reasons: list[str] = Field(default_factory=list)


class RecommendationsResponse(BaseModel):
    request_id: str
    cached: bool = Field(description="served from the cache (or a batch job's precomputed list)")
    experiment: str | None = Field(default=None, description="the A/B experiment that served this user")
    variant: str | None = Field(default=None, description="the user's variant in that experiment")
    model_version: str
    basis: Literal["history", "history+recent", "session", "popular"] = Field(
        description="history: the trained user; history+recent: with events since training; "
        "session: an unknown user's context; popular: nothing known about the user"
    )
    items: list[ScoredItem]


class RankRequest(Strict):
    user_id: Id
    item_ids: list[Id] = Field(min_length=1, max_length=HARD_MAX_LIST, description="your candidates")
    context: list[Id] = Field(default_factory=list, max_length=HARD_MAX_LIST)


class RankResponse(BaseModel):
    request_id: str
    model_version: str
    items: list[ScoredItem] = Field(description="the known candidates, best first")
    unknown_items: list[str] = Field(description="ids not in the catalogue (left out)")
    unavailable_items: list[str] = Field(description="ids withdrawn from sale (left out)")


class SimilarItemOut(BaseModel):
    item_id: str
    score: float
    text_similarity: float
    covisits: int
    reasons: list[str]


class SimilarResponse(BaseModel):
    request_id: str
    model_version: str
    item_id: str
    items: list[SimilarItemOut]


class ItemIn(Strict):
    title: Text | None = None
    category: Text | None = None
    brand: Text | None = None
    description: Text | None = None
    text: Text | None = Field(default=None, description="the item's whole text (replaces the fields)")

    @model_validator(mode="after")
    def _has_text(self) -> ItemIn:
        if not any((v or "").strip() for v in self.model_dump().values()):
            raise ValueError("an item needs text: one of title, category, brand, description, text")
        return self


class ItemOut(BaseModel):
    item_id: str
    status: Literal["created", "updated", "withdrawn"]
    model_version: str


class EventIn(Strict):
    user_id: Id
    item_id: Id
    type: Literal["view", "click", "cart", "purchase"]
    request_id: str | None = Field(default=None, max_length=256, description="the response it follows")
    revenue: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, description="a purchase's value (A/B revenue)"
    )
    timestamp: datetime | None = None


class EventsRequest(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=HARD_MAX_LIST)


class EventsResponse(BaseModel):
    accepted: int
    unknown_items: list[str] = Field(description="events on ids not in the catalogue (stored, not used)")


class ReloadRequest(Strict):
    model_dir: str | None = Field(default=None, description="artifact folder; default: the current one")


class ReloadResponse(BaseModel):
    model_version: str
    model_dir: str
    seconds: float


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "degraded", "loading"]
    model_version: str | None
    cache: dict[str, Any]


class Problem(BaseModel):
    """Every error response."""

    error: str
    detail: list[dict[str, Any]] = Field(default_factory=list)
    request_id: str | None = None
