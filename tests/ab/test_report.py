"""The report on logs with a known effect; the HTML page rendered by headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest

from recsys.ab.experiments import parse_experiments
from recsys.ab.html import render_html
from recsys.ab.log import exposure, frame, outcome
from recsys.ab.report import analyse, render_text

T0 = 1_764_000_000.0
EXPERIMENTS = parse_experiments(
    {
        "experiments": [
            {
                "name": "exp",
                "salt": "salt",
                "control": "control",
                "variants": [
                    {"name": "control", "weight": 0.5, "ranking": "als"},
                    {"name": "treatment", "weight": 0.5},
                ],
            }
        ]
    }
)


def synthetic_logs(n_users=6000, ctr=(0.10, 0.13), drop_control=0.0, seed=0):
    """Users assigned by the real hash; clicks with a known CTR per variant; purchases with revenue
    that depends on a pre-period spend (so CUPED has something to remove)."""
    rng = np.random.default_rng(seed)
    e = EXPERIMENTS.get("exp")
    exposures, outcomes = [], []
    for i in range(n_users):
        user = f"user-{i}"
        variant = e.assign(user).name
        if variant == "control" and rng.random() < drop_control:
            continue  # a broken pipeline losing some control users' exposures
        spend = rng.gamma(2.0, 10.0)  # pre-period revenue
        outcomes.append(outcome(user, "old", "purchase", revenue=spend, ts=T0 - 86_400))
        if rng.random() < 0.5:  # repeat buyers: spend again what they spent before, roughly
            outcomes.append(
                outcome(user, "z", "purchase", revenue=0.8 * spend + rng.normal(0, 3), ts=T0 + 1800)
            )
        rate = ctr[0] if variant == "control" else ctr[1]
        for j in range(int(rng.integers(1, 4))):
            ts = T0 + rng.uniform(0, 3600)
            rid = f"r{i}-{j}"
            exposures.append(
                exposure(
                    "exp",
                    variant,
                    user,
                    rid,
                    ["a", "b", "c"],
                    model_version="m",
                    basis="history",
                    cached=bool(j),
                    latency_ms=float(rng.gamma(2, 5 if variant == "control" else 5.2)),
                    ts=ts,
                )
            )
            if rng.random() < rate:
                outcomes.append(outcome(user, "a", "click", request_id=rid, ts=ts + 5))
                if rng.random() < 0.3:
                    outcomes.append(
                        outcome(user, "a", "purchase", revenue=0.5 * spend + rng.normal(0, 2), ts=ts + 9)
                    )
    exposures.append(
        exposure(
            "exp",
            "treatment",
            "user-err",
            "r-err",
            [],
            model_version="m",
            basis="",
            cached=False,
            latency_ms=3.0,
            event="error",
            ts=T0 + 10,
        )
    )
    ex = frame("exposures", [(str(k), r) for k, r in enumerate(exposures)])
    oc = frame("outcomes", [(str(k), r) for k, r in enumerate(outcomes)])
    return ex, oc


@pytest.fixture(scope="module")
def report():
    ex, oc = synthetic_logs()
    return analyse(EXPERIMENTS.get("exp"), ex, oc)


def test_the_report_finds_a_real_lift_with_honest_intervals(report):
    ctr = report["metrics"]["ctr"]
    lift = ctr["lift"]["treatment"]
    assert 0.08 < ctr["values"]["control"]["mean"] < 0.12
    assert 0.11 < ctr["values"]["treatment"]["mean"] < 0.15
    assert lift["p_value"] < 0.01 and lift["abs_ci"][0] > 0
    assert lift["rel_ci"][0] < 0.3 < lift["rel_ci"][1]  # the true relative lift, 0.13 / 0.10 - 1
    assert report["users"] == 6000 and not report["srm"]["mismatch"]
    assert report["verdict"][0].startswith("treatment raised CTR")


def test_cuped_shrinks_the_revenue_interval(report):
    rev = report["metrics"]["revenue_per_user"]
    lift = rev["lift"]["treatment"]
    assert report["pre_period"] and rev["cuped"]["variance_reduction"] > 0.05
    width = lift["abs_ci"][1] - lift["abs_ci"][0]
    cuped_width = lift["cuped"]["abs_ci"][1] - lift["cuped"]["abs_ci"][0]
    assert cuped_width < width


def test_guardrails_count_errors_and_compare_latency(report):
    by = {v["name"]: v for v in report["variants"]}
    assert by["treatment"]["errors"] == 1 and by["control"]["errors"] == 0
    treatment = next(g for g in report["guardrails"] if g["variant"] == "treatment")
    assert treatment["checks"][0]["check"] == "error rate" and treatment["checks"][0]["value"] > 0
    assert treatment["checks"][1]["value"] == pytest.approx(1.04, abs=0.15)


def test_the_timeline_narrows_as_data_arrives(report):
    points = report["timeline"]
    assert len(points) == 24
    widths = [p["lift"]["treatment"]["ci"][1] - p["lift"]["treatment"]["ci"][0] for p in points[2:]]
    assert widths[-1] < widths[0]
    assert points[-1]["users"] == report["users"]


def test_a_skewed_split_trips_the_sample_ratio_check():
    ex, oc = synthetic_logs(drop_control=0.1)
    skewed = analyse(EXPERIMENTS.get("exp"), ex, oc)
    assert skewed["srm"]["mismatch"] and skewed["srm"]["p_value"] < 0.001
    assert skewed["verdict"][0].startswith("Sample ratio mismatch")
    assert "MISMATCH" in render_text(skewed)


def test_users_in_two_variants_are_left_out():
    ex, oc = synthetic_logs(n_users=500)
    moved = ex.filter(pl.col("user_id") == "user-1").with_columns(
        variant=pl.when(pl.col("variant") == "control")
        .then(pl.lit("treatment"))
        .otherwise(pl.lit("control")),
        entry_id=pl.col("entry_id") + "x",
    )
    out = analyse(EXPERIMENTS.get("exp"), pl.concat([ex, moved]), oc)
    assert out["excluded_users"] == 1 and out["users"] == 499


def test_the_terminal_table_shows_every_metric(report):
    text = render_text(report)
    for word in ("ctr", "conversion", "revenue_per_user", "CUPED", "sample ratio check", "guardrail"):
        assert word in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_html_report_renders_in_headless_chromium_with_its_plots(report, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("RECSYS_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed: .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'p'}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    plots = set(re.findall(r"data-plot=\"([\w-]+)\"", dom))
    assert {"forest", "timeline", "metric-ctr", "metric-conversion", "metric-revenue_per_user"} <= plots
    assert len(re.findall(r"<circle class=\"point\"", dom)) >= 3 + 2 * 4  # forest + each metric's variants
    assert '<polyline class="lift"' in dom and '<polygon class="band"' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1100,2400",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)
    # The plots' colours are on the page (not a blank or unstyled render).
    blue = (np.abs(pixels - [76, 120, 168]).sum(axis=2) < 40).sum()
    green_or_grey = (np.abs(pixels - [42, 125, 42]).sum(axis=2) < 40).sum()
    assert blue > 200 and green_or_grey > 50
