"""Access: write and admin endpoints need a key; keys never reach logs or responses; oversized
requests are refused before they are read; the service runs as an unprivileged user."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from serving.local_redis import free_port
from tests.serving.conftest import KEY, client_for, make_settings

WRONG = "wrong-key-7f3a9c-do-not-log"
WRITES = [
    ("post", "/v1/events", {"events": [{"user_id": "U000000", "item_id": "I000001", "type": "view"}]}),
    ("put", "/v1/items/NEW", {"title": "a new item"}),
    ("delete", "/v1/items/I000001", None),
    ("post", "/v1/admin/reload", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_every_write_refuses_a_missing_or_wrong_key_and_never_echoes_it(
    memory_client, caplog, method, path, body
):
    caplog.set_level(logging.DEBUG)
    kwargs = {"json": body} if body is not None else {}
    missing = getattr(memory_client, method)(path, **kwargs)
    wrong = getattr(memory_client, method)(path, headers={"X-API-Key": WRONG}, **kwargs)
    assert missing.status_code == 401 and wrong.status_code == 401
    for response in (missing, wrong):
        assert WRONG not in response.text and KEY not in response.text
        assert response.json()["error"] == "missing or wrong X-API-Key header"
    assert WRONG not in caplog.text and KEY not in caplog.text


def test_without_configured_keys_writes_are_forbidden(hybrid_artifact):
    settings = make_settings(hybrid_artifact, None)
    settings.api_keys = []
    with client_for(settings) as client:
        response = client.post("/v1/admin/reload", json={}, headers={"X-API-Key": KEY})
    assert response.status_code == 403 and KEY not in response.text


def test_a_key_in_a_failing_request_is_not_logged(memory_client, caplog):
    caplog.set_level(logging.DEBUG)
    bad = memory_client.post(
        "/v1/events", content=b'{"events": [', headers={"X-API-Key": KEY, "content-type": "application/json"}
    )
    assert bad.status_code == 422 and KEY not in bad.text and KEY not in caplog.text


def test_an_oversized_body_is_refused_from_its_length_alone(memory_client):
    # A declared length over the limit is refused before a byte of the body is read.
    response = memory_client.post(
        "/v1/recommendations",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**9)},
    )
    assert response.status_code == 413


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_the_service_runs_as_an_unprivileged_user(hybrid_artifact):
    """As in docs/operations.md: a user that may read the artifact and write nothing else."""
    import tempfile

    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run([*drop, sys.executable, "-c", "import recsys"], capture_output=True, cwd="/")
    if probe.returncode != 0:  # e.g. a checkout under a root-only folder (mktemp -d)
        pytest.skip("the project is not readable by nobody from this checkout")
    top = tempfile.mkdtemp(prefix="recsys-nobody-")  # pytest's own folders are root-only
    folder = os.path.join(top, "model")
    shutil.copytree(hybrid_artifact, folder)
    for root, _, files in os.walk(top):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    port = free_port()
    env = {**os.environ, "RECSYS_API_KEYS": KEY, "HOME": "/nonexistent", "RECSYS_AB_LOG_DIR": "/nonexistent"}
    env.pop("RECSYS_REDIS_URL", None)
    proc = subprocess.Popen(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-m",
            "recsys.cli",
            "serve",
            "--model-dir",
            str(folder),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd="/",
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.loads(r.read())["status"] == "ready"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.3)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/recommendations",
            json.dumps({"user_id": "U000000", "k": 3}).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert len(json.loads(r.read())["items"]) == 3
        owner = subprocess.run(["ps", "-o", "user=", "-p", str(proc.pid)], capture_output=True, text=True)
        assert owner.stdout.strip() == "nobody"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(top, ignore_errors=True)
