"""Service settings: one class, read from ``RECSYS_*`` environment variables (and ``REDIS_URL``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    model_dir: Path | None = Field(default=None, description="artifact folder written by `recsys train`")
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RECSYS_REDIS_URL", "REDIS_URL"),
        description="redis://host:port/db; unset: an in-process TTL cache",
    )
    # Comma-separated in the environment. Write and admin endpoints refuse every call without one.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    key_prefix: str = "recsys"
    cache_ttl_s: int = Field(
        default=600, ge=1, description="how long a computed list is served from the cache"
    )
    memory_cache_entries: int = Field(default=100_000, ge=1, description="in-process cache size (no Redis)")
    recent_limit: int = Field(default=50, ge=1, description="events kept per user as recent history")
    recent_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, description="how long a user's recent events live")
    max_k: int = Field(default=100, ge=1)
    max_candidates: int = Field(default=1000, ge=1, description="ids in one /v1/rank call")
    max_context: int = Field(default=100, ge=0, description="recent item ids in one request's context")
    max_filter_ids: int = Field(default=1000, ge=0, description="ids in one filter list")
    max_events: int = Field(default=1000, ge=1, description="events in one /v1/events call")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    with_reasons: bool = Field(default=True, description="explain each recommended item")
    model_threads: int = Field(
        default=1, ge=1, description="torch, BLAS and LightGBM threads of one model call"
    )
    model_concurrency: int = Field(
        default=1,
        ge=1,
        description="model calls computed at once per worker (1: one pass at a time, batching the rest)",
    )
    batch_wait_ms: float = Field(
        default=8.0,
        ge=0,
        description="longest wait for a batch to fill when more requests are expected (0: never wait)",
    )
    compile_ranker: bool = Field(
        default=True,
        description="compile the ranker's trees to native code at load (lleaves; cached per machine)",
    )
    catalogue_poll_s: float = Field(
        default=1.0, gt=0, description="how often workers apply others' item changes"
    )
    experiments_file: Path | None = Field(
        default=None, description="TOML file of A/B experiments (see recsys.ab.experiments); unset: none"
    )
    ab_log_dir: Path = Field(
        default=Path("ab-log"), description="experiment records go here (JSON lines) when no Redis is set"
    )
    ab_flush_s: float = Field(default=0.2, gt=0, description="how often experiment records are written")
    ab_buffer_records: int = Field(
        default=200_000, ge=1, description="records kept while the log is unreachable (then the oldest go)"
    )
    redis_timeout_s: float = Field(default=0.1, gt=0, description="socket timeout of one Redis call")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="first wait before retrying a lost Redis")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest wait between Redis retries")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
