"""The report's statistics against scipy and textbook formulas on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recsys.ab.stats import compare, cuped, linearise, mean_summary, proportion_test, ratio_summary, srm


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_mean_metric_matches_welch_in_scipy(rng):
    c = rng.normal(10.0, 3.0, 800)
    t = rng.normal(10.6, 4.0, 1100)
    got = compare(mean_summary(c), mean_summary(t))
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert got.df == pytest.approx(ref.df, rel=1e-10)
    lo, hi = ref.confidence_interval(0.95)
    assert got.abs_ci == pytest.approx((lo, hi), rel=1e-8)
    assert got.abs_lift == pytest.approx(t.mean() - c.mean())


def test_relative_lift_interval_is_the_delta_method(rng):
    c, t = rng.exponential(2.0, 5000), rng.exponential(2.2, 5000)
    got = compare(mean_summary(c), mean_summary(t))
    mc, mt = c.mean(), t.mean()
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    z = stats.norm.ppf(0.975)
    assert got.rel_lift == pytest.approx(mt / mc - 1)
    assert got.rel_ci == pytest.approx((mt / mc - 1 - z * se, mt / mc - 1 + z * se))


def test_ratio_metric_variance_is_the_delta_method(rng):
    exposures = rng.integers(1, 8, 3000).astype(float)
    clicks = rng.binomial(exposures.astype(int), 0.12).astype(float)
    ratio, lin = linearise(clicks, exposures)
    assert ratio == pytest.approx(clicks.sum() / exposures.sum())
    assert lin.mean() == pytest.approx(ratio)
    # Textbook delta method: Var(X̄/Ȳ) ≈ (σx² − 2Rσxy + R²σy²) / (n μy²).
    n, mu_y = len(clicks), exposures.mean()
    cov = np.cov(clicks, exposures, ddof=1)
    expected = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mu_y**2)
    assert ratio_summary(clicks, exposures).var_mean == pytest.approx(expected, rel=1e-10)


def test_ratio_interval_covers_the_truth_at_the_nominal_rate():
    """Coverage of the delta-method interval over repeated experiments with a known CTR."""
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(400):
        exposures = rng.integers(1, 6, 500)
        clicks = rng.binomial(exposures, 0.1)
        lo, hi = ratio_summary(clicks, exposures).interval()
        covered += lo <= 0.1 <= hi
    assert 0.92 <= covered / 400 <= 0.98


def test_no_difference_gives_uniform_p_values():
    rng = np.random.default_rng(11)
    ps = [
        compare(mean_summary(rng.normal(0, 1, 200)), mean_summary(rng.normal(0, 1, 200))).p_value
        for _ in range(500)
    ]
    assert 0.02 <= np.mean(np.array(ps) < 0.05) <= 0.08


def test_srm_matches_scipy_and_flags_a_skewed_split():
    ok = srm({"a": 5021, "b": 4979}, {"a": 0.5, "b": 0.5})
    ref = stats.chisquare([5021, 4979], [5000, 5000])
    assert ok["chi2"] == pytest.approx(ref.statistic) and ok["p_value"] == pytest.approx(ref.pvalue)
    assert not ok["mismatch"]
    skewed = srm({"a": 5200, "b": 4800}, {"a": 0.5, "b": 0.5})
    assert skewed["mismatch"] and skewed["p_value"] < 0.001
    weighted = srm({"a": 2000, "b": 8000}, {"a": 0.2, "b": 0.8})
    assert not weighted["mismatch"]


def test_cuped_keeps_the_mean_and_removes_the_explained_variance(rng):
    x = rng.normal(5, 2, 4000)
    y = 0.8 * x + rng.normal(0, 1, 4000)
    adj, theta, reduction = cuped(y, x)
    assert adj.mean() == pytest.approx(y.mean())
    assert theta == pytest.approx(np.cov(x, y)[0, 1] / x.var(ddof=1))
    r2 = np.corrcoef(x, y)[0, 1] ** 2
    assert reduction == pytest.approx(r2)
    assert adj.var(ddof=1) == pytest.approx(y.var(ddof=1) * (1 - r2), rel=1e-9)


def test_cuped_without_covariate_variance_changes_nothing(rng):
    y = rng.normal(0, 1, 100)
    adj, theta, reduction = cuped(y, np.ones(100))
    assert np.array_equal(adj, y) and theta == 0 and reduction == 0


def test_proportion_test_matches_the_pooled_z_test():
    p = proportion_test(30, 1000, 55, 1000)
    pooled = 85 / 2000
    z = (0.055 - 0.03) / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert p == pytest.approx(2 * stats.norm.sf(z))
