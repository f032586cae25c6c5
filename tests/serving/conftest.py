from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY = "test-key"


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A private redis-server that a test may stop and start again."""

    def __init__(self, tmp_path) -> None:
        self.port, self.dir = _free_port(), tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_available(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


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
