"""``recsys ab report``: one experiment's drained logs → per-variant metrics, lifts, checks.

Users are analysed from their first exposure in the experiment on (an outcome before it cannot be
the variant's doing); a user seen in more than one variant is left out and counted (assignment is
sticky, so any such user means the configuration changed mid-experiment). Outcomes before a user's
first exposure (or before the experiment's ``start``) are the pre-period CUPED adjusts with.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.ab.experiments import Experiment
from recsys.ab.stats import Summary, compare, cuped, mean_summary, proportion_test, ratio_summary, srm
from recsys.errors import DataError

METRIC_LABELS = {
    "ctr": "CTR (clicks per exposure)",
    "conversion": "conversion (users who bought)",
    "revenue_per_user": "revenue per user",
    "clicks_per_user": "clicks per user",
}
# The pre-period value CUPED adjusts each mean metric with (CTR is a ratio: not adjusted).
COVARIATE = {"conversion": "pre_bought", "revenue_per_user": "pre_revenue", "clicks_per_user": "pre_clicks"}
TIMELINE_POINTS = 24


@dataclass(frozen=True)
class UserTable:
    users: pl.DataFrame  # one row per analysed user: variant, first_ts, exposures, clicks, ... pre_*
    excluded: int  # users seen in more than one variant
    start: float
    end: float
    has_pre: bool


def user_table(
    experiment: Experiment, exposures: pl.DataFrame, outcomes: pl.DataFrame, until: float | None = None
) -> UserTable:
    exp = exposures.filter((pl.col("experiment") == experiment.name) & (pl.col("event") == "exposure"))
    if until is not None:
        exp = exp.filter(pl.col("ts") <= until)
    if exp.height == 0:
        raise DataError(f"no exposures of experiment {experiment.name!r} in the logs")
    per = exp.group_by("user_id").agg(
        pl.col("variant").n_unique().alias("n_variants"),
        pl.col("variant").first(),
        pl.col("ts").min().alias("first_ts"),
        pl.len().alias("exposures"),
    )
    excluded = int((per["n_variants"] > 1).sum())
    per = per.filter(pl.col("n_variants") == 1).drop("n_variants")
    ts = exp["ts"].to_numpy()
    start, end = float(ts.min()), float(ts.max())
    o = outcomes.join(per.select("user_id", "first_ts"), on="user_id", how="inner")
    if until is not None:
        o = o.filter(pl.col("ts") <= until)
    pre_cut = pl.lit(experiment.start.timestamp()) if experiment.start is not None else pl.col("first_ts")
    during = o.filter(pl.col("ts") >= pl.col("first_ts"))
    pre = o.filter(pl.col("ts") < pre_cut)

    def totals(frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
        return frame.group_by("user_id").agg(
            (pl.col("type") == "click").sum().alias(f"{prefix}clicks"),
            (pl.col("type") == "purchase").sum().alias(f"{prefix}purchases"),
            pl.when(pl.col("type") == "purchase")
            .then(pl.col("revenue"))
            .otherwise(0.0)
            .fill_null(0.0)
            .sum()
            .alias(f"{prefix}revenue"),
        )

    users = per.join(totals(during, ""), on="user_id", how="left").join(
        totals(pre, "pre_"), on="user_id", how="left"
    )
    users = users.with_columns(
        pl.exclude("user_id", "variant", "first_ts", "exposures").fill_null(0)
    ).with_columns(
        bought=(pl.col("purchases") > 0).cast(pl.Float64),
        pre_bought=(pl.col("pre_purchases") > 0).cast(pl.Float64),
    )
    return UserTable(users.sort("user_id"), excluded, start, end, pre.height > 0)


VALUE_COLUMN = {"conversion": "bought", "revenue_per_user": "revenue", "clicks_per_user": "clicks"}


def _summaries(users: pl.DataFrame, metric: str, column: str | None = None) -> dict[str, Summary]:
    """Per variant: the metric's mean and its variance (``column`` overrides a mean metric's values)."""
    out = {}
    for (variant,), g in users.group_by("variant"):
        if metric == "ctr":
            out[str(variant)] = ratio_summary(g["clicks"].to_numpy(), g["exposures"].to_numpy())
        else:
            out[str(variant)] = mean_summary(g[column or VALUE_COLUMN[metric]].to_numpy())
    return out


def analyse(
    experiment: Experiment, exposures: pl.DataFrame, outcomes: pl.DataFrame, *, until: float | None = None
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see ``render_text`` and ``recsys.ab.html``)."""
    table = user_table(experiment, exposures, outcomes, until)
    users = table.users
    control = experiment.control
    names = [v.name for v in experiment.variants]
    counts = {n: int((users["variant"] == n).sum()) for n in names}
    all_exp = exposures.filter(pl.col("experiment") == experiment.name)
    if until is not None:
        all_exp = all_exp.filter(pl.col("ts") <= until)
    variants = []
    for v in experiment.variants:
        rows = all_exp.filter(pl.col("variant") == v.name)
        n_exp = int((rows["event"] == "exposure").sum())
        n_err = int((rows["event"] == "error").sum())
        lat = rows.filter(pl.col("event") == "exposure")["latency_ms"].drop_nulls().to_numpy()
        variants.append(
            {
                "name": v.name,
                "label": v.label,
                "weight": experiment.weights[v.name],
                "users": counts[v.name],
                "exposures": n_exp,
                "errors": n_err,
                "error_rate": n_err / (n_exp + n_err) if n_exp + n_err else 0.0,
                "latency_ms": _percentiles(lat),
                "cached_share": _share(rows.filter(pl.col("event") == "exposure")["cached"]),
            }
        )
    metrics: dict[str, Any] = {}
    for metric in METRIC_LABELS:
        raw = _summaries(users, metric)
        entry: dict[str, Any] = {
            "label": METRIC_LABELS[metric],
            "values": {n: _summary_dict(raw.get(n)) for n in names},
            "lift": {},
        }
        adjusted = None
        covariate = users[COVARIATE[metric]].to_numpy() if metric in COVARIATE else None
        if table.has_pre and covariate is not None and covariate.var() > 0:  # a constant explains nothing
            adj, theta, reduction = cuped(users[VALUE_COLUMN[metric]].to_numpy(), covariate)
            adjusted = _summaries(users.with_columns(_adj=pl.Series(adj)), metric, column="_adj")
            entry["cuped"] = {"theta": theta, "variance_reduction": reduction}
        for n in names:
            if n == control or n not in raw or control not in raw:
                continue
            lift = compare(raw[control], raw[n]).as_dict()
            if adjusted is not None:
                lift["cuped"] = compare(adjusted[control], adjusted[n]).as_dict()
            entry["lift"][n] = lift
        metrics[metric] = entry
    guard = _guardrails(experiment, variants)
    timeline = _timeline(experiment, exposures, outcomes, table)
    check = srm(counts, experiment.weights)
    return {
        "experiment": experiment.name,
        "salt": experiment.salt,
        "control": control,
        "primary": experiment.primary,
        "generated_at": time.time(),
        "period": {"start": table.start, "end": table.end},
        "users": int(users.height),
        "excluded_users": table.excluded,
        "pre_period": table.has_pre,
        "variants": variants,
        "metrics": metrics,
        "srm": check,
        "guardrails": guard,
        "timeline": timeline,
        "verdict": _verdict(experiment, metrics, check, guard),
    }


def _share(flags: pl.Series) -> float:
    values = flags.drop_nulls().to_numpy()
    return float(values.mean()) if len(values) else 0.0


def _summary_dict(s: Summary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    lo, hi = s.interval()
    return {"mean": s.mean, "se": s.se, "ci": [lo, hi], "users": s.n}


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _guardrails(experiment: Experiment, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {v["name"]: v for v in variants}
    c = by[experiment.control]
    out = []
    for v in variants:
        checks = []
        rate_ok = v["error_rate"] <= experiment.guardrails.max_error_rate
        p_err = (
            proportion_test(
                c["errors"], c["exposures"] + c["errors"], v["errors"], v["exposures"] + v["errors"]
            )
            if v["name"] != experiment.control
            else float("nan")
        )
        checks.append(
            {
                "check": "error rate",
                "value": v["error_rate"],
                "limit": experiment.guardrails.max_error_rate,
                "p_value_vs_control": p_err,
                "ok": rate_ok,
            }
        )
        if v["name"] != experiment.control:
            p99_c, p99_v = c["latency_ms"]["p99"], v["latency_ms"]["p99"]
            ratio = p99_v / p99_c if p99_c and p99_v is not None else None
            checks.append(
                {
                    "check": "p99 latency vs control",
                    "value": ratio,
                    "limit": experiment.guardrails.latency_p99_ratio,
                    "ok": ratio is None or ratio <= experiment.guardrails.latency_p99_ratio,
                }
            )
        out.append({"variant": v["name"], "checks": checks, "ok": all(ch["ok"] for ch in checks)})
    return out


def _timeline(
    experiment: Experiment, exposures: pl.DataFrame, outcomes: pl.DataFrame, table: UserTable
) -> list[dict[str, Any]]:
    """The primary metric's relative lift of each variant over control, on the data up to each of
    ``TIMELINE_POINTS`` moments from the first exposure to the last."""
    if table.end <= table.start:
        return []
    points = []
    for t in np.linspace(table.start, table.end, TIMELINE_POINTS + 1)[1:]:
        try:
            users = user_table(experiment, exposures, outcomes, until=float(t)).users
        except DataError:
            continue
        raw = _summaries(users, experiment.primary)
        c = raw.get(experiment.control)
        point: dict[str, Any] = {"t": float(t), "users": int(users.height), "lift": {}}
        for name, s in raw.items():
            if name == experiment.control or c is None or s.n < 2 or c.n < 2:
                continue
            cmp = compare(c, s)
            point["lift"][name] = {"rel": cmp.rel_lift, "ci": list(cmp.rel_ci), "p_value": cmp.p_value}
        points.append(point)
    return points


def _verdict(
    experiment: Experiment, metrics: dict[str, Any], check: dict[str, Any], guard: list[dict[str, Any]]
) -> list[str]:
    """Plain sentences for the top of the report."""
    lines = []
    if check["mismatch"]:
        lines.append(
            f"Sample ratio mismatch (chi-square p = {check['p_value']:.2g} < 0.001): the split of users is "
            "not what the weights say, so the lifts below cannot be trusted. Find the cause first."
        )
    primary = metrics[experiment.primary]
    for name, lift in primary["lift"].items():
        use = lift.get("cuped", lift)
        lo, hi = use["rel_ci"]
        sig = use["p_value"] < 0.05
        direction = "raised" if use["rel_lift"] > 0 else "lowered"
        if sig:
            lines.append(
                f"{name} {direction} {primary['label']} by {use['rel_lift']:+.1%} "
                f"against {experiment.control} "
                f"(95% CI {lo:+.1%} to {hi:+.1%}, p = {use['p_value']:.2g}): significant at 5%."
            )
        else:
            lines.append(
                f"{name} against {experiment.control}: {primary['label']} {use['rel_lift']:+.1%} "
                f"(95% CI {lo:+.1%} to {hi:+.1%}, p = {use['p_value']:.2g}): not significant at 5%."
            )
    for g in guard:
        if not g["ok"]:
            failed = ", ".join(ch["check"] for ch in g["checks"] if not ch["ok"])
            lines.append(f"Guardrail breached by {g['variant']}: {failed}.")
    return lines


def _fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric in ("ctr", "conversion"):
        return f"{value:.4f}"
    return f"{value:.3f}"


def render_text(report: dict[str, Any]) -> str:
    """The terminal table."""
    names = [v["name"] for v in report["variants"]]
    control = report["control"]
    out = [f"experiment {report['experiment']}  (control: {control}, {report['users']} users analysed)"]
    if report["excluded_users"]:
        out.append(f"  {report['excluded_users']} users seen in more than one variant were left out")
    out.append("")
    head = f"{'variant':<16} {'users':>8} {'exposures':>10} {'errors':>7} {'p99 ms':>8}  serves"
    out += [head, "-" * len(head)]
    for v in report["variants"]:
        p99 = v["latency_ms"]["p99"]
        out.append(
            f"{v['name']:<16} {v['users']:>8} {v['exposures']:>10} {v['errors']:>7} "
            f"{'-' if p99 is None else f'{p99:.1f}':>8}  {v['label']}"
        )
    out.append("")
    head = (
        f"{'metric':<18} {'variant':<14} {'value':>9} {'abs lift [95% CI]':>30} "
        f"{'rel lift [95% CI]':>28} {'p':>8}"
    )
    out += [head, "-" * len(head)]
    for metric, entry in report["metrics"].items():
        for n in names:
            value = (entry["values"].get(n) or {}).get("mean")
            lift = entry["lift"].get(n)
            if lift is None:
                out.append(f"{metric:<18} {n:<14} {_fmt(value, metric):>9}")
                continue
            rows = [("", lift)] + ([("  CUPED", lift["cuped"])] if "cuped" in lift else [])
            for tag, lf in rows:
                lo, hi = lf["abs_ci"]
                rlo, rhi = lf["rel_ci"]
                abs_txt = f"{lf['abs_lift']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                rel_txt = f"{lf['rel_lift']:+.1%} [{rlo:+.1%}, {rhi:+.1%}]"
                label = tag or metric
                out.append(
                    f"{label:<18} {n:<14} {_fmt(value, metric) if not tag else '':>9} {abs_txt:>30} "
                    f"{rel_txt:>28} {lf['p_value']:>8.2g}"
                )
        if "cuped" in entry:
            out.append(f"{'':<18} CUPED removed {entry['cuped']['variance_reduction']:.1%} of the variance")
    s = report["srm"]
    out += [
        "",
        f"sample ratio check: chi-square {s['chi2']:.2f}, p = {s['p_value']:.3g}"
        + ("  ** MISMATCH: do not trust the lifts **" if s["mismatch"] else "  (ok)"),
    ]
    for g in report["guardrails"]:
        for ch in g["checks"]:
            value = ch["value"]
            shown = (
                "-" if value is None else (f"{value:.4f}" if ch["check"] == "error rate" else f"{value:.2f}x")
            )
            out.append(
                f"guardrail {g['variant']:<14} {ch['check']:<24} {shown:>9} (limit {ch['limit']}) "
                + ("ok" if ch["ok"] else "BREACHED")
            )
    out += ["", *report["verdict"]]
    return "\n".join(out)


def strict_json(value: Any) -> Any:
    """``value`` (a report) with NaN and infinities as null, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
