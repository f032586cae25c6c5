"""Lists exported by batch scoring are what the service answers from its cache."""

from __future__ import annotations

import polars as pl

from pipelines.score import ScoreRun, read_output, run_scoring
from tests.serving.conftest import client_for, make_settings


def test_exported_lists_are_what_the_service_reads(hybrid_artifact, redis_url, tmp_path):
    settings = make_settings(hybrid_artifact, redis_url)
    run = ScoreRun(
        model_dir=hybrid_artifact,
        users="all",
        k=10,
        out=tmp_path / "lists",
        partition_size=150,
        reasons=True,
        to_redis=redis_url,
        redis_prefix=settings.key_prefix,
        progress=False,
    )
    report = run_scoring(run)
    assert report["exported_to_redis"] == 400
    out = read_output(tmp_path / "lists")
    with client_for(settings) as service:
        for user in ("U000005", "U000250"):
            served = service.post("/v1/recommendations", json={"user_id": user, "k": 10}).json()
            assert served["cached"] is True
            expected = out.filter(pl.col("user_id") == user).sort("rank")
            assert [i["item_id"] for i in served["items"]] == expected["item_id"].to_list()
            assert [i["reasons"] for i in served["items"]] == expected["reasons"].to_list()
