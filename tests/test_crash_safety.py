"""A process killed (SIGKILL) while writing an artifact or a batch partition leaves the previous
complete version readable, and a rerun finishes the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipelines.score import read_output
from recsys.artifacts import artifact_version, load_recommender, read_manifest

SAVE_LOOP = """
import sys, itertools
from recsys.artifacts import load_recommender, save_recommender
folder = sys.argv[1]
rec = load_recommender(folder)
print("ready", flush=True)
for i in itertools.count():
    save_recommender(rec, folder, report={"generation": i})
"""


@pytest.mark.slow
def test_an_artifact_killed_mid_save_is_still_the_previous_complete_one(hybrid_artifact, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(hybrid_artifact, folder)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    versions = {artifact_version(folder)}
    for delay in (0.05, 0.2, 0.45, 0.8, 1.3):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(folder)], env=env, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        manifest = read_manifest(folder)  # complete: the loader checks every file's size against it
        rec = load_recommender(folder)
        assert rec.recommend_user("U000000", 5)[0]
        versions.add(artifact_version(folder))
        assert manifest["report"].get("generation", 0) >= 0
    assert len(versions) > 1  # saves did complete between the kills


@pytest.mark.slow
def test_batch_scoring_killed_mid_run_keeps_whole_partitions_and_resumes(hybrid_artifact, tmp_path):
    out = tmp_path / "lists"
    cmd = [
        sys.executable,
        "-m",
        "recsys.cli",
        "score",
        "--model-dir",
        str(hybrid_artifact),
        "--k",
        "5",
        "--out",
        str(out),
        "--partition-size",
        "20",
        "--no-progress",
    ]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("part-*.parquet"))
    assert 3 <= len(done) < 20  # killed part-way through the 20 partitions
    import polars as pl

    for part in done:
        assert pl.read_parquet(part)["user_id"].n_unique() == 20  # every finished part is whole
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    resumed = read_output(out)
    full = tmp_path / "full"
    assert subprocess.run([*cmd[:-4], str(full), *cmd[-3:]], env=env, capture_output=True).returncode == 0
    assert resumed.equals(read_output(full))
