"""`recsys ab` end to end through the real service: simulate → drain (twice) → report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from serving.local_redis import free_port
from tests.serving.conftest import KEY
from tests.serving.test_ab_serving import write_experiments


def recsys(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_simulate_drain_report_through_the_running_service(hybrid_artifact, synthetic, tmp_path):
    items, events = tmp_path / "items.parquet", tmp_path / "interactions.parquet"
    synthetic.items.write_parquet(items)
    synthetic.interactions.drop("seq").write_parquet(events)
    experiments = write_experiments(tmp_path / "exp.toml")
    assert recsys("ab", "check", str(experiments), "--model-dir", str(hybrid_artifact)).returncode == 0
    log_dir, port = tmp_path / "ab-log", free_port()
    env = {
        **os.environ,
        "RECSYS_API_KEYS": KEY,
        "RECSYS_AB_LOG_DIR": str(log_dir),
        "RECSYS_AB_FLUSH_S": "0.05",
    }
    env.pop("RECSYS_REDIS_URL", None)
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "recsys.cli",
                "serve",
                "--model-dir",
                str(hybrid_artifact),
                "--port",
                str(port),
                "--experiments",
                str(experiments),
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, serve_log.read_text()
                time.sleep(0.3)
        sim = recsys(
            "ab",
            "simulate",
            "--items",
            str(items),
            "--interactions",
            str(events),
            "--api",
            f"http://127.0.0.1:{port}",
            "--api-key",
            KEY,
            "--users",
            "50",
            "--noise-click",
            "0.3",
            "--pre-period-log-dir",
            str(log_dir),
            "--no-progress",
            "--output",
            str(tmp_path / "sim.json"),
        )
        assert sim.returncode == 0, sim.stderr
    finally:
        proc.send_signal(signal.SIGINT)  # shutdown writes what is still buffered
        proc.wait(timeout=30)
    summary = json.loads((tmp_path / "sim.json").read_text())
    assert summary["users"] == 50 and not summary["failures"]
    assert set(summary["by_variant"]) == {"als-only", "hybrid"}

    out = tmp_path / "logs"
    first = recsys("ab", "drain", "--log-dir", str(log_dir), "--out", str(out))
    assert first.returncode == 0 and "exposures: 50 written" in first.stdout, first.stdout + first.stderr
    second = recsys("ab", "drain", "--log-dir", str(log_dir), "--out", str(out))
    assert "exposures: 0 written" in second.stdout and "outcomes: 0 written" in second.stdout

    report = recsys(
        "ab",
        "report",
        "hybrid-vs-als",
        "--experiments",
        str(experiments),
        "--logs",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert report.returncode == 0, report.stderr
    assert "sample ratio check" in report.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["users"] == 50 and data["pre_period"]
    clicks = sum(v["clicks"] for v in summary["by_variant"].values())
    assert clicks > 0
    ctr = data["metrics"]["ctr"]["values"]
    exposures = {v["name"]: v["exposures"] for v in data["variants"]}
    logged_clicks = sum(ctr[n]["mean"] * exposures[n] for n in exposures)
    assert logged_clicks == pytest.approx(clicks)  # every click the client made is in the report
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_bad_experiment_files_fail_the_cli_with_the_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[experiments]]\nname = "x"\nsalt = "s"\n[[experiments.variants]]\nname = "a"\nweight = 0.7\n'
        '[[experiments.variants]]\nname = "b"\nweight = 0.7\n'
    )
    run = recsys("ab", "check", str(bad))
    assert run.returncode == 2 and "weights must sum to 1" in run.stderr
