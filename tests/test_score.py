"""Batch scoring: the API's lists, resumable partitions, Ray equal to local, export to the cache."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.score import (
    ScoreRun,
    partition_path,
    read_output,
    run_scoring,
)
from recsys.artifacts import artifact_version, load_recommender
from recsys.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def rec(hybrid_artifact):
    return load_recommender(hybrid_artifact)


def _run(artifact, out, **kw) -> dict:
    options = {"users": "all", "k": 5, "partition_size": 150, "progress": False, **kw}
    return run_scoring(ScoreRun(model_dir=artifact, out=out, **options))


def test_local_output_is_what_the_recommender_serves(hybrid_artifact, rec, tmp_path):
    report = _run(hybrid_artifact, tmp_path / "lists")
    out = read_output(tmp_path / "lists")
    assert report["users_scored_now"] == rec.data.n_users == out["user_id"].n_unique()
    assert sorted(p.name for p in (tmp_path / "lists").glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert (out["model_version"] == artifact_version(hybrid_artifact)).all()
    for user in ("U000000", "U000123", "U000399"):
        served = [r.item_id for r in rec.recommend_user(user, 5)[0]]
        assert out.filter(pl.col("user_id") == user).sort("rank")["item_id"].to_list() == served


def test_a_rerun_resumes_and_gives_identical_output(hybrid_artifact, tmp_path):
    out = tmp_path / "lists"
    _run(hybrid_artifact, out)
    full = read_output(out)
    partition_path(out, 1).unlink()  # a crash before the second partition was written
    (out / ".part-00002.parquet.x1.tmp").write_bytes(b"half a file")  # and a half-written one
    report = _run(hybrid_artifact, out)
    assert report["users_scored_now"] == 150  # only the missing partition
    assert read_output(out).equals(full)
    with pytest.raises(ConfigError, match="another job"):
        _run(hybrid_artifact, out, k=7)


def test_users_from_a_file_and_bad_files(hybrid_artifact, tmp_path):
    (tmp_path / "users.txt").write_text("U000001\nnobody\nU000001\n")
    _run(hybrid_artifact, tmp_path / "some", users=str(tmp_path / "users.txt"))
    out = read_output(tmp_path / "some")
    assert out["user_id"].unique(maintain_order=True).to_list() == ["U000001", "nobody"]
    with pytest.raises(DataError, match="does not exist"):
        _run(hybrid_artifact, tmp_path / "x", users=str(tmp_path / "missing.txt"))


@pytest.mark.slow
def test_ray_output_equals_local(hybrid_artifact, tmp_path):
    _run(hybrid_artifact, tmp_path / "local", reasons=True)
    _run(hybrid_artifact, tmp_path / "ray", reasons=True, engine="ray", workers=2)
    assert read_output(tmp_path / "ray").equals(read_output(tmp_path / "local"))
