"""The HTTP service on the synthetic shop's artifact, with a real Redis (and without one)."""

from __future__ import annotations

import shutil
import time

import pytest

from recsys.artifacts import load_recommender
from tests.serving.conftest import KEY, client_for, make_settings

USER = "U000000"
AUTH = {"X-API-Key": KEY}
ANY_CACHE = {"backend": "memory", "reachable": True}


def recommend(client, **body):
    response = client.post("/v1/recommendations", json={"user_id": USER, "k": 10, **body})
    assert response.status_code == 200, response.text
    return response.json()


def ids(payload) -> list[str]:
    return [item["item_id"] for item in payload["items"]]


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_cached_equals_uncached(backend, request, hybrid_artifact):
    client = request.getfixturevalue(f"{backend}_client")
    first = recommend(client)
    second = recommend(client)
    assert first["cached"] is False and second["cached"] is True
    assert first["request_id"] != second["request_id"]
    for key in ("items", "model_version", "basis"):
        assert first[key] == second[key]
    assert len(first["items"]) == 10 and first["basis"] == "history"
    assert all(item["reasons"] for item in first["items"])
    # What the service computed is what the library gives for the same user.
    direct, _ = load_recommender(hybrid_artifact).recommend_user(USER, 10)
    assert ids(first) == [r.item_id for r in direct]
    # Other parameters are other entries.
    assert recommend(client, k=5)["cached"] is False
    assert recommend(client, filters={"max_per_category": 1})["cached"] is False


def test_an_event_changes_the_next_response(redis_client):
    before = recommend(redis_client)
    top = before["items"][0]["item_id"]
    assert recommend(redis_client)["cached"] is True
    response = redis_client.post(
        "/v1/events",
        json={
            "events": [
                {"user_id": USER, "item_id": top, "type": "purchase", "request_id": before["request_id"]}
            ]
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "unknown_items": []}
    after = recommend(redis_client)
    assert after["cached"] is False and after["basis"] == "history+recent"
    assert top not in ids(after)  # bought: now part of the history, so not recommended again
    assert ids(after) != ids(before)


def test_lists_exported_by_a_batch_job_are_served_from_the_cache(hybrid_artifact, redis_url):
    import redis

    from pipelines.export import export_lists
    from recsys.artifacts import artifact_version

    rec = load_recommender(hybrid_artifact)
    users = ["U000001", "U000002"]
    lists = [(u, "history", rec.recommend_user(u, 10)[0]) for u in users]
    settings = make_settings(hybrid_artifact, redis_url)
    client = redis.Redis.from_url(redis_url)
    n = export_lists(
        client, artifact_version(hybrid_artifact), lists, k=10, ttl_s=60, prefix=settings.key_prefix
    )
    assert n == 2
    with client_for(settings) as service:
        for user, _, recs in lists:
            served = recommend(service, user_id=user)
            assert served["cached"] is True
            assert ids(served) == [r.item_id for r in recs]
        assert recommend(service, user_id="U000003")["cached"] is False  # not exported


def test_unknown_users_get_a_fallback_never_an_error(memory_client):
    popular = recommend(memory_client, user_id="nobody-knows-me")
    assert popular["basis"] == "popular" and len(popular["items"]) == 10
    session = recommend(memory_client, user_id="anonymous-1", context=["I000003", "not-an-item"])
    assert session["basis"] == "session" and "I000003" not in ids(session)
    assert ids(session) != ids(popular)


def test_a_new_item_is_recommendable_right_after_put(memory_client, hybrid_artifact):
    rec = load_recommender(hybrid_artifact)
    twin_of = "I000005"
    row = rec.data.items.index([twin_of])[0]
    fields = rec.data.item_frame.row(int(row), named=True)
    item = {k: fields[k] for k in ("title", "category", "brand", "description")}
    response = memory_client.put("/v1/items/NEW-1", json=item, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "created"

    similar = memory_client.get(f"/v1/items/{twin_of}/similar", params={"k": 5, "by": "text"}).json()
    assert similar["items"][0]["item_id"] == "NEW-1"
    found = {item["item_id"]: item for item in similar["items"]}
    assert found["NEW-1"]["text_similarity"] == pytest.approx(1.0, abs=1e-4)  # same text
    assert found["NEW-1"]["covisits"] == 0
    ranked = memory_client.post("/v1/rank", json={"user_id": USER, "item_ids": ["NEW-1", "I000001"]}).json()
    assert sorted(ids(ranked)) == ["I000001", "NEW-1"] and ranked["unknown_items"] == []
    # A session that just viewed its twin: the text source makes it a candidate, the ranker places it.
    session = {"user_id": "anon", "context": [twin_of]}
    assert "NEW-1" in ids(recommend(memory_client, **session, k=100))
    only = recommend(memory_client, **session, filters={"include_items": ["NEW-1"]})
    assert ids(only) == ["NEW-1"]
    # An event on it makes it part of the user's history, and the text scorer uses it at once.
    assert memory_client.post(
        "/v1/events",
        json={"events": [{"user_id": "fresh", "item_id": "NEW-1", "type": "view"}]},
        headers=AUTH,
    ).json() == {"accepted": 1, "unknown_items": []}
    assert recommend(memory_client, user_id="fresh")["basis"] == "session"

    assert memory_client.delete("/v1/items/NEW-1", headers=AUTH).json()["status"] == "withdrawn"
    similar = memory_client.get(f"/v1/items/{twin_of}/similar", params={"k": 5}).json()
    assert "NEW-1" not in ids(similar)
    ranked = memory_client.post("/v1/rank", json={"user_id": USER, "item_ids": ["NEW-1", "I000001"]}).json()
    assert ids(ranked) == ["I000001"] and ranked["unavailable_items"] == ["NEW-1"]
    assert "NEW-1" not in ids(recommend(memory_client, **session, k=100))


def test_workers_share_catalogue_changes_through_redis(hybrid_artifact, redis_url):
    """Two apps on one Redis prefix stand for two workers; a third starts after the changes."""
    prefix = f"test-shared-{time.monotonic_ns()}"
    item = {"title": "Borosilicate beaker 250 ml", "category": "Lab Glassware"}
    with (
        client_for(make_settings(hybrid_artifact, redis_url, key_prefix=prefix)) as one,
        client_for(make_settings(hybrid_artifact, redis_url, key_prefix=prefix)) as two,
    ):
        assert one.put("/v1/items/NEW-B", json=item, headers=AUTH).json()["status"] == "created"
        assert one.delete("/v1/items/I000002", headers=AUTH).status_code == 200
        version = one.get("/readyz").json()["model_version"]
        deadline = time.monotonic() + 5
        while two.get("/readyz").json()["model_version"] != version:
            assert time.monotonic() < deadline, "the other worker never applied the changes"
            time.sleep(0.05)
        ranked = two.post("/v1/rank", json={"user_id": USER, "item_ids": ["NEW-B", "I000002"]}).json()
        assert ids(ranked) == ["NEW-B"] and ranked["unavailable_items"] == ["I000002"]
    with client_for(make_settings(hybrid_artifact, redis_url, key_prefix=prefix)) as restarted:
        assert restarted.get("/readyz").json()["model_version"] == version
        assert restarted.get("/v1/items/NEW-B/similar").status_code == 200


def test_rank_reports_unknown_ids(memory_client):
    body = {"user_id": USER, "item_ids": ["I000010", "nope", "I000011", "I000010"]}
    ranked = memory_client.post("/v1/rank", json=body).json()
    assert sorted(ids(ranked)) == ["I000010", "I000011"]
    assert ranked["unknown_items"] == ["nope"]
    scores = [item["score"] for item in ranked["items"]]
    assert scores == sorted(scores, reverse=True)


def test_a_stopped_redis_still_gives_200s(hybrid_artifact, private_redis):
    with client_for(make_settings(hybrid_artifact, private_redis.url)) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert recommend(client)["cached"] is False
        assert recommend(client)["cached"] is True
        private_redis.stop()
        down = recommend(client)
        assert down["cached"] is False and len(down["items"]) == 10
        assert client.get("/readyz").json()["status"] == "degraded"
        assert "recsys_cache_degraded 1.0" in client.get("/metrics").text
        event = {"events": [{"user_id": USER, "item_id": down["items"][0]["item_id"], "type": "click"}]}
        assert client.post("/v1/events", json=event, headers=AUTH).status_code == 200
        assert recommend(client)["basis"] == "history+recent"  # this worker's events still count
        put = client.put("/v1/items/NEW-1", json={"title": "a drill"}, headers=AUTH)
        assert put.status_code == 503 and put.headers["retry-after"] == "1"  # not accepted, then lost
        private_redis.start()
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["status"] != "ready":
            assert time.monotonic() < deadline, "did not reconnect"
            time.sleep(0.05)
        back = recommend(client)
        assert back["basis"] == "history+recent"  # the outage's events reached Redis
        assert recommend(client)["cached"] is True


def test_an_unreachable_redis_at_start_is_degraded_not_down(hybrid_artifact):
    with client_for(make_settings(hybrid_artifact, "redis://127.0.0.1:1/0")) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "degraded"
        assert recommend(client)["items"]


def test_reload_swaps_a_good_artifact_and_refuses_a_bad_one(memory_client, hybrid_artifact, tmp_path):
    version = memory_client.get("/readyz").json()["model_version"]
    good = memory_client.post("/v1/admin/reload", json={}, headers=AUTH)
    assert good.status_code == 200 and good.json()["model_version"] == version

    broken = tmp_path / "broken"
    shutil.copytree(hybrid_artifact, broken)
    (broken / "ranker.txt").write_text("truncated")
    for folder in (broken, tmp_path / "missing", tmp_path):
        refused = memory_client.post("/v1/admin/reload", json={"model_dir": str(folder)}, headers=AUTH)
        assert refused.status_code == 409, refused.text
        assert "refused" in refused.json()["error"]
    assert memory_client.get("/readyz").json()["model_version"] == version
    assert recommend(memory_client)["model_version"] == version


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": USER, "k": 0}, "body.k"),
        ({"user_id": USER, "k": 101}, "body.k"),
        ({"user_id": USER, "k": "ten"}, "body.k"),
        ({"k": 5}, "body.user_id"),
        ({"user_id": ""}, "body.user_id"),
        ({"user_id": USER, "colour": "red"}, "body.colour"),
        ({"user_id": USER, "context": ["x"] * 101}, "body.context"),
        ({"user_id": USER, "filters": {"max_per_category": 0}}, "body.filters.max_per_category"),
        ({"user_id": USER, "filters": {"exclude_items": "I000001"}}, "body.filters.exclude_items"),
        ({"user_id": USER, "filters": {"include_items": ["I1"] * 1001}}, "body.filters.include_items"),
        (
            {"user_id": USER, "filters": {"exclude_categories": ["c"] * 1001}},
            "body.filters.exclude_categories",
        ),
    ],
)
def test_bad_recommendation_requests_are_422_with_the_field(memory_client, body, field):
    response = memory_client.post("/v1/recommendations", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["error"] == "invalid request" and problem["request_id"]
    assert field in [d["field"] for d in problem["detail"]], problem
    assert all(d["reason"] for d in problem["detail"])


def test_other_bad_input_is_a_4xx_not_a_500(memory_client):
    bad_json = memory_client.post(
        "/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422
    event = {"events": [{"user_id": USER, "item_id": "I000001", "type": "teleport"}]}
    assert memory_client.post("/v1/events", json=event, headers=AUTH).status_code == 422
    assert memory_client.post("/v1/events", json={"events": []}, headers=AUTH).status_code == 422
    assert memory_client.put("/v1/items/X", json={"title": "  "}, headers=AUTH).status_code == 422
    assert memory_client.get("/v1/items/nope/similar").status_code == 404
    assert memory_client.delete("/v1/items/nope", headers=AUTH).status_code == 404
    assert memory_client.get("/v1/items/I000001/similar", params={"k": 0}).status_code == 422
    huge = {"user_id": USER, "context": ["x" * 200] * 6000}
    assert memory_client.post("/v1/recommendations", json=huge).status_code == 413
    assert memory_client.post("/v1/rank", json={"user_id": USER, "item_ids": []}).status_code == 422


def test_events_with_mixed_timestamps_are_ordered_by_time(memory_client):
    events = [
        {"user_id": "mixed", "item_id": "I000001", "type": "view", "timestamp": "2026-01-02T00:00:00+02:00"},
        {"user_id": "mixed", "item_id": "I000002", "type": "view", "timestamp": "2026-01-01T23:30:00"},
        {"user_id": "mixed", "item_id": "I000003", "type": "cart"},
    ]
    response = memory_client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert response.status_code == 200, response.text
    session = recommend(memory_client, user_id="mixed")
    assert session["basis"] == "session"
    assert not {"I000001", "I000002", "I000003"} & set(ids(session))


def test_writes_need_a_key(memory_client):
    event = {"events": [{"user_id": USER, "item_id": "I000001", "type": "view"}]}
    assert memory_client.post("/v1/events", json=event).status_code == 401
    assert memory_client.post("/v1/events", json=event, headers={"X-API-Key": "wrong"}).status_code == 401
    assert (
        memory_client.post("/v1/events", json=event, headers={"X-API-Key": "second-key"}).status_code == 200
    )
    assert memory_client.put("/v1/items/Z", json={"title": "z"}).status_code == 401
    assert memory_client.post("/v1/admin/reload", json={}).status_code == 401


def test_metrics_count_latency_cache_and_errors(memory_client):
    recommend(memory_client)
    recommend(memory_client)
    memory_client.post("/v1/recommendations", json={"k": 1})
    text = memory_client.get("/metrics").text
    assert (
        'recsys_request_seconds_count{endpoint="/v1/recommendations",method="POST",status="200"} 2.0' in text
    )
    assert 'recsys_cache_total{endpoint="recommendations",result="hit"} 1.0' in text
    assert 'recsys_cache_total{endpoint="recommendations",result="miss"} 1.0' in text
    assert 'recsys_errors_total{endpoint="/v1/recommendations",kind="422"} 1.0' in text


def test_the_openapi_spec_has_every_endpoint_with_models(memory_client):
    spec = memory_client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/recommendations", "post"),
        ("/v1/rank", "post"),
        ("/v1/items/{item_id}/similar", "get"),
        ("/v1/items/{item_id}", "put"),
        ("/v1/items/{item_id}", "delete"),
        ("/v1/events", "post"),
        ("/v1/admin/reload", "post"),
    ]:
        op = paths[path][method]
        assert "$ref" in str(op["responses"]["200"]), (path, method)
        assert "422" in op["responses"]
    body = paths["/v1/recommendations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert {"user_id", "k", "filters", "context"} <= set(request["properties"])
    assert "FiltersIn" in spec["components"]["schemas"]


@pytest.mark.slow
def test_recsys_serve_reloads_on_sighup(hybrid_artifact, tmp_path):
    """The real command under uvicorn: SIGHUP reloads; a bad artifact at that path is refused."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from serving.local_redis import free_port

    folder = tmp_path / "model"
    shutil.copytree(hybrid_artifact, folder)
    port = free_port()
    env = {**os.environ, "RECSYS_API_KEYS": KEY}
    env.pop("RECSYS_REDIS_URL", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recsys.cli", "serve", "--model-dir", str(folder), "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    def ready() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                version = ready()["model_version"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        (folder / "ranker.txt").write_text("damaged")  # what a botched deploy leaves
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "reload refused" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert ready() == {"status": "ready", "model_version": version, "cache": ANY_CACHE}
        shutil.rmtree(folder)
        shutil.copytree(hybrid_artifact, folder)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while log.read_text().count("loaded ") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert ready()["model_version"] == version  # the same artifact again
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
