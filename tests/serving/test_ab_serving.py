"""A/B experiments in the service: assignment in the response, variant lists, the logs they leave."""

from __future__ import annotations

import json
import time

import pytest
import redis

from pipelines.ab_drain import drain_redis, read_table
from recsys.ab.experiments import load_experiments
from recsys.ab.log import stream_key
from recsys.ab.report import analyse
from recsys.artifacts import load_recommender
from recsys.cache_keys import lists_key
from recsys.errors import ConfigError
from tests.serving.conftest import KEY, client_for, make_settings

USERS = [f"U{i:06d}" for i in range(40)]
AUTH = {"X-API-Key": KEY}


def write_experiments(path, als_ranking="als", cap=None):
    treatment = f"\n  max_per_category = {cap}" if cap else ""
    path.write_text(
        f"""
[[experiments]]
name = "hybrid-vs-als"
salt = "test-salt"
control = "als-only"
  [[experiments.variants]]
  name = "als-only"
  weight = 0.5
  ranking = "{als_ranking}"
  [[experiments.variants]]
  name = "hybrid"
  weight = 0.5
  ranking = "hybrid"{treatment}
"""
    )
    return path


def read_jsonl(folder):
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_each_user_gets_their_variants_list_and_one_exposure_per_list(hybrid_artifact, tmp_path):
    experiments_file = write_experiments(tmp_path / "exp.toml")
    experiment = load_experiments(experiments_file).get("hybrid-vs-als")
    rec = load_recommender(hybrid_artifact)
    settings = make_settings(
        hybrid_artifact, None, experiments_file=experiments_file, ab_log_dir=tmp_path / "log", ab_flush_s=0.05
    )
    served = {}
    with client_for(settings) as client:
        for user in USERS:
            body = client.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
            variant = experiment.assign(user)
            assert body["experiment"] == "hybrid-vs-als" and body["variant"] == variant.name
            want, _ = rec.recommend_user(user, 5, ranking=variant.ranking)
            assert [i["item_id"] for i in body["items"]] == [r.item_id for r in want]
            again = client.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
            assert again["cached"] and again["variant"] == body["variant"] and again["items"] == body["items"]
            served[user] = body
        events = [
            {
                "user_id": USERS[0],
                "item_id": served[USERS[0]]["items"][0]["item_id"],
                "type": "click",
                "request_id": served[USERS[0]]["request_id"],
            },
            {
                "user_id": USERS[0],
                "item_id": served[USERS[0]]["items"][0]["item_id"],
                "type": "purchase",
                "revenue": 12.5,
            },
        ]
        assert client.post("/v1/events", json={"events": events}, headers=AUTH).status_code == 200
    assert {b["variant"] for b in served.values()} == {"als-only", "hybrid"}
    exposures = read_jsonl(tmp_path / "log" / "exposures")
    assert len(exposures) == 2 * len(USERS)  # one per served list, cached or not
    first = next(e for e in exposures if e["request_id"] == served[USERS[0]]["request_id"])
    assert first["items"] == [i["item_id"] for i in served[USERS[0]]["items"]]
    assert first["variant"] == served[USERS[0]]["variant"] and first["cached"] is False
    assert sum(e["cached"] for e in exposures) == len(USERS)
    outcomes = read_jsonl(tmp_path / "log" / "outcomes")
    assert [(o["type"], o["revenue"]) for o in outcomes] == [("click", None), ("purchase", 12.5)]
    assert outcomes[0]["request_id"] == served[USERS[0]]["request_id"]


def test_a_variants_diversity_cap_is_applied(hybrid_artifact, tmp_path):
    experiments_file = write_experiments(tmp_path / "exp.toml", cap=1)
    experiment = load_experiments(experiments_file).get("hybrid-vs-als")
    rec = load_recommender(hybrid_artifact)
    user = next(u for u in USERS if experiment.assign(u).name == "hybrid")
    settings = make_settings(
        hybrid_artifact, None, experiments_file=experiments_file, ab_log_dir=tmp_path / "l"
    )
    with client_for(settings) as client:
        body = client.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
    categories = [rec.side.category[rec.data.items.index([i["item_id"]])[0]] for i in body["items"]]
    known = [c for c in categories if c >= 0]
    assert len(known) == len(set(known))


def test_an_experiment_naming_an_unknown_ranking_stops_the_start(hybrid_artifact, tmp_path):
    experiments_file = write_experiments(tmp_path / "exp.toml", als_ranking="sasrec")  # not in this artifact
    settings = make_settings(hybrid_artifact, None, experiments_file=experiments_file)
    with pytest.raises(ConfigError, match="sasrec"), client_for(settings):
        pass


def test_redis_streams_carry_the_logs_to_a_report(hybrid_artifact, redis_url, tmp_path):
    experiments_file = write_experiments(tmp_path / "exp.toml")
    settings = make_settings(hybrid_artifact, redis_url, experiments_file=experiments_file, ab_flush_s=0.05)
    r = redis.Redis.from_url(redis_url)
    try:
        with client_for(settings) as client:
            for user in USERS:
                body = client.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
                # Cache keys carry the variant: the list is stored under the variant's field.
                fields = r.hkeys(lists_key(settings.key_prefix, body["model_version"], user))
                assert fields == [f"k=5|hybrid-vs-als={body['variant']}".encode()]
                item = body["items"][0]["item_id"]
                event = {"user_id": user, "item_id": item, "type": "click", "request_id": body["request_id"]}
                client.post("/v1/events", json={"events": [event]}, headers=AUTH)
            time.sleep(0.2)
        assert r.xlen(stream_key(settings.key_prefix, "exposures")) == len(USERS)
        assert r.xlen(stream_key(settings.key_prefix, "outcomes")) == len(USERS)
        drain_redis(r, tmp_path / "logs", prefix=settings.key_prefix)
        report = analyse(
            load_experiments(experiments_file).get("hybrid-vs-als"),
            read_table(tmp_path / "logs", "exposures"),
            read_table(tmp_path / "logs", "outcomes"),
        )
        assert report["users"] == len(USERS)
        assert sum(v["exposures"] for v in report["variants"]) == len(USERS)
        assert report["metrics"]["ctr"]["values"]["hybrid"]["mean"] == pytest.approx(1.0)
    finally:
        r.delete(*(stream_key(settings.key_prefix, s) for s in ("exposures", "outcomes")))


def test_a_variant_can_serve_another_artifact(hybrid_artifact, tmp_path):
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(hybrid_artifact, other)
    (tmp_path / "exp.toml").write_text(
        """
[[experiments]]
name = "two-artifacts"
salt = "two-artifacts-salt"
  [[experiments.variants]]
  name = "current"
  weight = 0.5
  [[experiments.variants]]
  name = "candidate"
  weight = 0.5
  model_dir = "other-model"
  ranking = "als"
"""
    )
    experiment = load_experiments(tmp_path / "exp.toml").get("two-artifacts")
    rec = load_recommender(other)
    settings = make_settings(
        hybrid_artifact, None, experiments_file=tmp_path / "exp.toml", ab_log_dir=tmp_path / "log"
    )
    with client_for(settings) as client:
        for user in USERS[:12]:
            body = client.post("/v1/recommendations", json={"user_id": user, "k": 5}).json()
            variant = experiment.assign(user)
            assert body["variant"] == variant.name
            if variant.name == "candidate":  # the other folder's ALS ranking
                want, _ = rec.recommend_user(user, 5, ranking="als")
                assert [i["item_id"] for i in body["items"]] == [r.item_id for r in want]
