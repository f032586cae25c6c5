from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from serving import local_redis
from serving.app import create_app
from serving.local_redis import RedisProcess
from serving.settings import Settings

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY = "test-key"


def redis_available(url: str = REDIS_URL) -> bool:
    return local_redis.redis_available(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis of the test run (``.ci/run`` starts one); in CI its absence is a failure."""
    if not redis_available():
        if os.environ.get("RECSYS_REQUIRE_REDIS"):
            pytest.fail(f"no Redis at {REDIS_URL}: .ci/run starts one")
        pytest.skip(f"no Redis at {REDIS_URL} (start redis-server)")
    return REDIS_URL


def make_settings(model_dir, redis_url: str | None, **extra) -> Settings:
    return Settings(
        model_dir=model_dir,
        redis_url=redis_url,
        api_keys=[KEY, "second-key"],
        key_prefix=extra.pop("key_prefix", f"test-{uuid.uuid4().hex[:8]}"),  # by default, own keys
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        catalogue_poll_s=extra.pop("catalogue_poll_s", 0.05),
        **extra,
    )


@contextmanager
def client_for(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def redis_client(hybrid_artifact, redis_url) -> Iterator[TestClient]:
    with client_for(make_settings(hybrid_artifact, redis_url)) as client:
        yield client


@pytest.fixture
def memory_client(hybrid_artifact) -> Iterator[TestClient]:
    with client_for(make_settings(hybrid_artifact, None)) as client:
        yield client


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        if os.environ.get("RECSYS_REQUIRE_REDIS"):
            pytest.fail("redis-server is not installed: .ci/run installs it")
        pytest.skip("redis-server is not installed")
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
