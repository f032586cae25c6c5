"""The statistics of an A/B report: per-user metrics compared between two variants.

Every metric is a mean over users (a user is the unit of randomisation, so users, not requests,
are the independent observations):

- **mean metrics** (conversion, revenue per user, clicks per user): Welch's two-sample t-test and
  interval, with Welch–Satterthwaite degrees of freedom;
- **ratio metrics** (CTR = clicks / exposures, both summed per user): the delta method. The ratio's
  variance is that of the linearised per-user values ``(clicks_i - R * exposures_i) / mean(exposures)``
  (Deng, Knoblich & Lu, 2018), which then go through the same Welch test;
- **relative lift** ``mean_t / mean_c - 1``: the delta method on the ratio of two independent means;
- **CUPED** (Deng et al., 2013): ``y - theta * (x - mean(x))`` with a pre-period covariate ``x`` and
  ``theta = cov(x, y) / var(x)`` pooled over both variants; the mean is unchanged, the variance
  shrinks by the squared correlation;
- **sample ratio mismatch**: a chi-square goodness-of-fit test of users per variant against the
  configured weights; p < 0.001 means the split is broken and no lift should be trusted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as st

Z95 = float(st.norm.ppf(0.975))
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Summary:
    """A per-user metric in one variant: its mean, the mean's variance, and the count of users."""

    mean: float
    var_mean: float  # variance of the mean (s² / n)
    n: int

    @property
    def se(self) -> float:
        return math.sqrt(max(self.var_mean, 0.0))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        z = float(st.norm.ppf(0.5 + level / 2))
        return self.mean - z * self.se, self.mean + z * self.se


@dataclass(frozen=True)
class Comparison:
    control: float
    treatment: float
    abs_lift: float
    abs_ci: tuple[float, float]
    rel_lift: float
    rel_ci: tuple[float, float]
    p_value: float
    statistic: float
    df: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def mean_summary(y: np.ndarray) -> Summary:
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    var = float(y.var(ddof=1)) / n if n > 1 else float("nan")
    return Summary(float(y.mean()) if n else float("nan"), var, n)


def linearise(num: np.ndarray, den: np.ndarray) -> tuple[float, np.ndarray]:
    """The ratio ``sum(num) / sum(den)`` and its per-user linearisation, whose mean is the ratio
    and whose sample variance / n is the delta-method variance of the ratio."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    d_bar = den.mean()
    ratio = num.sum() / den.sum()
    return float(ratio), ratio + (num - ratio * den) / d_bar


def ratio_summary(num: np.ndarray, den: np.ndarray) -> Summary:
    _, lin = linearise(num, den)
    return mean_summary(lin)


def compare(c: Summary, t: Summary, level: float = 0.95) -> Comparison:
    """Treatment against control: Welch's t on the difference, delta method on the relative lift."""
    diff = t.mean - c.mean
    var = c.var_mean + t.var_mean
    se = math.sqrt(var) if var > 0 else 0.0
    if se > 0 and c.n > 1 and t.n > 1:
        df = var**2 / (c.var_mean**2 / (c.n - 1) + t.var_mean**2 / (t.n - 1))
        stat = diff / se
        p = float(2 * st.t.sf(abs(stat), df))
        q = float(st.t.ppf(0.5 + level / 2, df))
    else:
        df, stat, p, q = float("nan"), float("nan"), float("nan"), float("nan")
    abs_ci = (diff - q * se, diff + q * se)
    if c.mean != 0:
        rel = t.mean / c.mean - 1
        rel_var = t.var_mean / c.mean**2 + (t.mean**2) * c.var_mean / c.mean**4
        z = float(st.norm.ppf(0.5 + level / 2))
        rel_ci = (rel - z * math.sqrt(rel_var), rel + z * math.sqrt(rel_var))
    else:
        rel, rel_ci = float("nan"), (float("nan"), float("nan"))
    return Comparison(c.mean, t.mean, diff, abs_ci, rel, rel_ci, p, stat, df)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``y`` adjusted by covariate ``x`` (pooled over every group it is given): the adjusted values,
    theta, and the share of variance removed (the squared correlation)."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    vx = float(x.var(ddof=1)) if len(x) > 1 else 0.0
    if vx <= 0:
        return y.copy(), 0.0, 0.0
    cov = float(np.cov(x, y, ddof=1)[0, 1])
    theta = cov / vx
    vy = float(y.var(ddof=1))
    reduction = (cov**2 / (vx * vy)) if vy > 0 else 0.0
    return y - theta * (x - x.mean()), theta, reduction


def srm(observed: dict[str, int], weights: dict[str, float]) -> dict[str, Any]:
    """Chi-square goodness of fit of the users per variant against the configured weights."""
    names = list(weights)
    obs = np.array([observed.get(n, 0) for n in names], dtype=np.float64)
    total = obs.sum()
    if total == 0:
        return {"chi2": float("nan"), "p_value": float("nan"), "mismatch": False, "observed": observed}
    expected = np.array([weights[n] for n in names]) * total
    chi2, p = st.chisquare(obs, expected)
    return {
        "chi2": float(chi2),
        "p_value": float(p),
        "mismatch": bool(p < SRM_ALPHA),
        "observed": {n: int(o) for n, o in zip(names, obs, strict=True)},
        "expected": {n: float(e) for n, e in zip(names, expected, strict=True)},
    }


def proportion_test(x_c: int, n_c: int, x_t: int, n_t: int) -> float:
    """Two-sided p-value that the treatment's rate exceeds or differs from control's (pooled z)."""
    if n_c == 0 or n_t == 0:
        return float("nan")
    p = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(p * (1 - p) * (1 / n_c + 1 / n_t))
    if se == 0:
        return 1.0
    z = (x_t / n_t - x_c / n_c) / se
    return float(2 * st.norm.sf(abs(z)))
