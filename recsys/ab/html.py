"""The A/B report as one self-contained HTML page: no scripts, no external files, plots as inline SVG.

Read top to bottom: the verdict in sentences, the sample-ratio and guardrail checks, a forest plot of
every lift with its 95% interval, each metric per variant with its interval, the primary metric's
cumulative lift over time (an interval that narrows and settles means the result is stable), and
the numbers in tables.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Any

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]
CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:980px;
color:#1d1d1f;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#666}.verdict{background:#f5f7fa;border-left:4px solid #4c78a8;padding:.6rem 1rem;margin:1rem 0}
.bad{border-left-color:#d62728;background:#fdf0f0}.ok{color:#2a7d2a}.breach{color:#d62728;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
td,th{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:right}th{background:#fafafa}
td:first-child,th:first-child{text-align:left}.plot{display:block;margin:.5rem 0}
.note{color:#666;font-size:.9rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _pct(v: float | None) -> str:
    return "-" if not _finite(v) else f"{v:+.1%}"


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if not _finite(v) else f"{v:.{digits}f}"


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float) -> None:
        if not hi > lo:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.08
        self.lo, self.hi, self.a, self.b = lo - pad, hi + pad, a, b

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        step = (self.hi - self.lo) / n
        mag = 10 ** math.floor(math.log10(step)) if step > 0 else 1
        step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=step)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def forest_plot(report: dict[str, Any]) -> str:
    """Every (metric, treatment) relative lift with its 95% interval, against the zero line."""
    rows = []
    for entry in report["metrics"].values():
        for name, lift in entry["lift"].items():
            use = lift.get("cuped", lift)
            if _finite(use["rel_lift"], *use["rel_ci"]):
                tag = " (CUPED)" if "cuped" in lift else ""
                rows.append(
                    (f"{entry['label']}{tag}: {name}", use["rel_lift"], *use["rel_ci"], use["p_value"])
                )
    if not rows:
        return "<p class='note'>No lift to plot.</p>"
    width, left, right, row_h, top = 940, 380, 40, 30, 30
    height = top + row_h * len(rows) + 40
    lo = min(min(r[2] for r in rows), 0.0)
    hi = max(max(r[3] for r in rows), 0.0)
    x = _Scale(lo, hi, left, width - right)
    parts = [
        f"<svg class='plot' data-plot='forest' width='{width}' height='{height}' role='img' "
        f"aria-label='relative lift of each metric with 95% intervals' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for t in x.ticks():
        parts.append(
            f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top - 10}' y2='{height - 30}' stroke='#eee'/>"
            f"<text x='{x(t):.1f}' y='{height - 12}' font-size='12' text-anchor='middle'>{t:+.0%}</text>"
        )
    parts.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='{top - 10}' y2='{height - 30}' stroke='#333'/>")
    for i, (label, rel, rlo, rhi, p) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        color = "#2a7d2a" if p < 0.05 and rel > 0 else ("#d62728" if p < 0.05 else "#888")
        parts.append(
            f"<text x='{left - 10}' y='{y + 4:.1f}' font-size='13' text-anchor='end'>{_e(label)}</text>"
            f"<line class='ci' x1='{x(rlo):.1f}' x2='{x(rhi):.1f}' y1='{y:.1f}' y2='{y:.1f}' "
            f"stroke='{color}' "
            f"stroke-width='3'/><circle class='point' cx='{x(rel):.1f}' cy='{y:.1f}' r='6' fill='{color}'>"
            f"<title>{_e(label)}: {rel:+.2%} (95% CI {rlo:+.2%} to {rhi:+.2%}, p = {p:.3g})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def metric_plot(metric: str, entry: dict[str, Any], names: list[str], control: str) -> str:
    """One metric: each variant's value with its 95% interval."""
    values = [(n, entry["values"].get(n)) for n in names]
    values = [(n, v) for n, v in values if v is not None and _finite(v["mean"], *v["ci"])]
    if not values:
        return ""
    width, height, left, top = 430, 70 + 34 * len(values), 110, 20
    x = _Scale(min(v["ci"][0] for _, v in values), max(v["ci"][1] for _, v in values), left, width - 20)
    parts = [
        f"<svg class='plot' data-plot='metric-{_e(metric)}' width='{width}' height='{height}' role='img' "
        f"aria-label='{_e(entry['label'])} per variant' xmlns='http://www.w3.org/2000/svg'>",
        f"<text x='0' y='14' font-size='13' font-weight='600'>{_e(entry['label'])}</text>",
    ]
    axis_y = height - 28
    for t in x.ticks(4):
        parts.append(
            f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top + 6}' y2='{axis_y}' stroke='#eee'/>"
            f"<text x='{x(t):.1f}' y='{axis_y + 16}' font-size='11' text-anchor='middle'>{t:.3g}</text>"
        )
    for i, (n, v) in enumerate(values):
        y = top + 22 + i * 34
        color = COLORS[names.index(n) % len(COLORS)]
        weight = "600" if n == control else "400"
        parts.append(
            f"<text x='{left - 10}' y='{y + 4}' font-size='13' font-weight='{weight}' "
            f"text-anchor='end'>{_e(n)}</text>"
            f"<line class='ci' x1='{x(v['ci'][0]):.1f}' x2='{x(v['ci'][1]):.1f}' y1='{y}' y2='{y}' "
            f"stroke='{color}' stroke-width='3'/>"
            f"<circle class='point' cx='{x(v['mean']):.1f}' cy='{y}' r='6' fill='{color}'>"
            f"<title>{_e(n)}: {v['mean']:.4g} (95% CI {v['ci'][0]:.4g} to {v['ci'][1]:.4g}, "
            f"{v['users']} users)"
            f"</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_plot(report: dict[str, Any]) -> str:
    """Cumulative relative lift of the primary metric over time, with its 95% band."""
    points = report["timeline"]
    names = sorted({n for p in points for n in p["lift"]})
    series = {
        n: [
            (p["t"], p["lift"][n])
            for p in points
            if n in p["lift"] and _finite(p["lift"][n]["rel"], *p["lift"][n]["ci"])
        ]
        for n in names
    }
    series = {n: s for n, s in series.items() if s}
    if not series:
        return "<p class='note'>Too little data for a timeline.</p>"
    width, height, left, right, top, bottom = 900, 320, 70, 30, 20, 50
    ts = [t for s in series.values() for t, _ in s]
    lows = [d["ci"][0] for s in series.values() for _, d in s]
    highs = [d["ci"][1] for s in series.values() for _, d in s]
    x = _Scale(min(ts), max(ts), left, width - right)
    y = _Scale(min(min(lows), 0.0), max(max(highs), 0.0), height - bottom, top)
    parts = [
        f"<svg class='plot' data-plot='timeline' width='{width}' height='{height}' role='img' "
        f"aria-label='cumulative lift over time' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for t in y.ticks():
        parts.append(
            f"<line x1='{left}' x2='{width - right}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#eee'/>"
            f"<text x='{left - 8}' y='{y(t) + 4:.1f}' font-size='12' text-anchor='end'>{t:+.0%}</text>"
        )
    parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y(0):.1f}' y2='{y(0):.1f}' stroke='#333'/>")
    start = min(ts)
    total = max(ts) - start
    unit, per = ("s", 1.0) if total < 600 else (("min", 60.0) if total < 3 * 3600 else ("h", 3600.0))
    elapsed = _Scale(0.0, total / per, left, width - right)  # ticks at round elapsed times
    for e in elapsed.ticks(6):
        t = start + e * per
        if e < 0 or t > max(ts):
            continue
        label = f"{e:g} {unit}"
        parts.append(
            f"<text x='{x(t):.1f}' y='{height - bottom + 18}' font-size='12' "
            f"text-anchor='middle'>{label}</text>"
        )
    parts.append(
        f"<text x='{(left + width - right) / 2}' y='{height - 8}' font-size='12' text-anchor='middle'>"
        "time since the first exposure (data up to each moment)</text>"
    )
    for i, (n, s) in enumerate(series.items()):
        color = COLORS[(i + 1) % len(COLORS)]
        upper = " ".join(f"{x(t):.1f},{y(d['ci'][1]):.1f}" for t, d in s)
        lower = " ".join(f"{x(t):.1f},{y(d['ci'][0]):.1f}" for t, d in reversed(s))
        line = " ".join(f"{x(t):.1f},{y(d['rel']):.1f}" for t, d in s)
        parts.append(
            f"<polygon class='band' points='{upper} {lower}' fill='{color}' fill-opacity='0.18'/>"
            f"<polyline class='lift' points='{line}' fill='none' stroke='{color}' stroke-width='2.5'/>"
            f"<text x='{width - right}' y='{y(s[-1][1]['rel']) - 8:.1f}' font-size='12' text-anchor='end' "
            f"fill='{color}'>{_e(n)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    names = [v["name"] for v in report["variants"]]
    control = report["control"]
    srm = report["srm"]
    bad = srm["mismatch"] or not all(g["ok"] for g in report["guardrails"])
    verdict = "".join(f"<p>{_e(line)}</p>" for line in report["verdict"])
    variant_rows = "".join(
        f"<tr><td>{_e(v['name'])}{' (control)' if v['name'] == control else ''}</td><td>{_e(v['label'])}</td>"
        f"<td>{v['weight']:.0%}</td><td>{v['users']:,}</td><td>{v['exposures']:,}</td><td>{v['errors']:,}</td>"
        f"<td>{_num(v['latency_ms']['p50'], 1)}</td><td>{_num(v['latency_ms']['p99'], 1)}</td></tr>"
        for v in report["variants"]
    )
    metric_rows = []
    for entry in report["metrics"].values():
        for n in names:
            val = entry["values"].get(n) or {}
            lift = entry["lift"].get(n)
            cells = [f"<td>{_e(entry['label'])}</td><td>{_e(n)}</td><td>{_num(val.get('mean'))}</td>"]
            if lift is None:
                cells.append("<td colspan='4' class='note'>control</td>")
            else:
                use = lift.get("cuped", lift)
                cells.append(
                    f"<td>{lift['abs_lift']:+.4f} [{lift['abs_ci'][0]:+.4f}, {lift['abs_ci'][1]:+.4f}]</td>"
                    f"<td>{_pct(lift['rel_lift'])} "
                    f"[{_pct(lift['rel_ci'][0])}, {_pct(lift['rel_ci'][1])}]</td>"
                    f"<td>{lift['p_value']:.3g}</td>"
                    + (
                        f"<td>{_pct(use['rel_lift'])} [{_pct(use['rel_ci'][0])}, {_pct(use['rel_ci'][1])}], "
                        f"p {use['p_value']:.3g}</td>"
                        if "cuped" in lift
                        else "<td class='note'>-</td>"
                    )
                )
            metric_rows.append("<tr>" + "".join(cells) + "</tr>")
    guard_rows = "".join(
        f"<tr><td>{_e(g['variant'])}</td><td>{_e(ch['check'])}</td><td>{_num(ch['value'], 4)}</td>"
        f"<td>{ch['limit']}</td><td class='{'ok' if ch['ok'] else 'breach'}'>"
        f"{'ok' if ch['ok'] else 'breached'}</td></tr>"
        for g in report["guardrails"]
        for ch in g["checks"]
    )
    srm_text = (
        f"Users per variant {srm.get('observed')} against the weights: chi-square {srm['chi2']:.2f}, "
        f"p = {srm['p_value']:.3g}. "
        + (
            "<span class='breach'>Mismatch (p &lt; 0.001): the split is broken.</span>"
            if srm["mismatch"]
            else "<span class='ok'>No mismatch.</span>"
        )
    )
    cuped_note = (
        "CUPED uses each user's outcomes before their first exposure as the covariate."
        if report["pre_period"]
        else "No pre-period outcomes in the logs: no CUPED adjustment."
    )
    plots = "".join(metric_plot(m, e, names, control) for m, e in report["metrics"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A/B report: {_e(report["experiment"])}</title>
<style>{CSS}</style></head><body>
<h1>A/B report: {_e(report["experiment"])}</h1>
<p class="sub">{_time(report["period"]["start"])} to {_time(report["period"]["end"])} ·
{report["users"]:,} users analysed · control: {_e(control)} · primary metric: {_e(report["primary"])}
{f" · {report['excluded_users']} users seen in two variants left out" if report["excluded_users"] else ""}</p>
<div class="verdict{" bad" if bad else ""}">{verdict}</div>
<h2>Variants</h2>
<table><tr><th>variant</th><th>serves</th><th>weight</th><th>users</th><th>exposures</th><th>errors</th>
<th>p50 ms</th><th>p99 ms</th></tr>{variant_rows}</table>
<h2>Sample ratio check</h2><p>{srm_text}</p>
<h2>Lift against {_e(control)}, with 95% intervals</h2>
<p class="note">Green: significantly better at 5%; red: significantly worse; grey: not significant.</p>
{forest_plot(report)}
<h2>Each metric per variant</h2>
<div style="display:flex;flex-wrap:wrap;gap:1rem">{plots}</div>
<h2>Cumulative lift over time: {_e(report["metrics"][report["primary"]]["label"])}</h2>
<p class="note">Each point uses the data up to that moment. Early intervals are wide; a result worth trusting
settles and stays on one side of zero.</p>
{timeline_plot(report)}
<h2>Numbers</h2>
<table><tr><th>metric</th><th>variant</th><th>value</th><th>absolute lift [95% CI]</th>
<th>relative lift [95% CI]</th><th>p</th><th>CUPED relative lift</th></tr>{"".join(metric_rows)}</table>
<p class="note">{cuped_note} Mean metrics: Welch's t-test; CTR: the delta method on clicks / exposures
per user.</p>
<h2>Guardrails</h2>
<table><tr><th>variant</th><th>check</th><th>value</th><th>limit</th><th></th></tr>{guard_rows}</table>
</body></html>
"""
