"""A private ``redis-server`` on a free port, for tests and benchmarks that stop and start Redis.

``durable=True`` writes every command to an append-only file before answering (``appendfsync
always``), so a restarted server has everything it acknowledged; otherwise nothing is persisted.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_available(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


class RedisProcess:
    """``start``/``stop`` a redis-server bound to 127.0.0.1 with its files in ``folder``."""

    def __init__(self, folder: str | Path, *, durable: bool = False) -> None:
        self.port, self.folder, self.durable = free_port(), Path(folder), durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        durable = ["--appendonly", "yes", "--appendfsync", "always"]
        persistence = durable if self.durable else ["--appendonly", "no"]
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(
            [*argv, "--save", "", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not redis_available(self.url):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): with ``durable``, the append-only file is complete."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None
