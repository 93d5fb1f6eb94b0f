"""Self-contained HTML drift report: inline SVG plots, inline CSS, one small inline script.

A drift report is attached to incidents and CI runs and opened long after the fact, often
offline, so it must not load anything: the page carries a Content-Security-Policy that forbids
every external fetch and allows only its own script (by hash). The script only adds
interactivity (filter to drifted features, sort); the plots are plain SVG and render without it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from html import escape

from shipway.drift.report import DriftReport, FeatureDrift

REF_COLOUR = "#8c96a5"
CUR_COLOUR = "#2f6fd6"
DRIFT_COLOUR = "#d2452f"
OK_COLOUR = "#3b8f5a"

_SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  var toggle = document.getElementById("only-drifted");
  function apply() {
    var only = toggle.checked;
    document.querySelectorAll("[data-feature]").forEach(function (el) {
      el.hidden = only && el.getAttribute("data-drifted") !== "true";
    });
  }
  toggle.addEventListener("change", apply);
  document.querySelectorAll("th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      var tbody = document.querySelector("#summary tbody");
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) {
        return parseFloat(b.getAttribute("data-" + key)) - parseFloat(a.getAttribute("data-" + key));
      });
      rows.forEach(function (r) { tbody.appendChild(r); });
    });
  });
  apply();
  body.setAttribute("data-plots", String(document.querySelectorAll("svg.plot").length));
  body.setAttribute("data-report-ready", "true");
})();
"""

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px}
.meta{color:#5b6472} .context{color:#5b6472;font-weight:400}
.bad{color:#d2452f;font-weight:600} .ok{color:#3b8f5a;font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e3e6eb;text-align:left}
th[data-sort]{cursor:pointer;text-decoration:underline dotted}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:16px}
figure{margin:0;border:1px solid #e3e6eb;border-radius:6px;padding:8px} figcaption{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#1d2330} .legend span{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def effect_ranking_svg(report: DriftReport) -> str:
    """Horizontal bars of each feature's strongest decision signal ÷ its threshold (the effect size,
    or the null-rate change when that is further past its own), drifted and highest first, with the
    threshold (1) as a dashed line. PSI is not drawn: the default rule does not decide on it."""
    null_rate = report.thresholds.null_rate
    ranked = report.ranked()
    signals = [f.signal(null_rate) for f in ranked]
    row, left, width = 22, 160, 420
    height = row * len(ranked) + 30
    top = max([1.25, *(ratio for *_, ratio in signals)])
    scale = width / top
    parts = [
        f'<svg class="plot effect-ranking" role="img" aria-label="Effect size ÷ threshold by feature" '
        f'width="{left + width + 230}" height="{height}" viewBox="0 0 {left + width + 230} {height}">'
    ]
    for i, (f, (measure, value, threshold, ratio)) in enumerate(zip(ranked, signals, strict=True)):
        y = 10 + i * row
        colour = DRIFT_COLOUR if f.drifted else CUR_COLOUR
        label = f"{measure} {_num(value, 3)} / {_num(threshold, 3)}"
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(f.name)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(ratio * scale, 1):.1f}" height="{row - 6}" '
            f'fill="{colour}"><title>{escape(f.name)}: {escape(label)}</title></rect>'
        )
        parts.append(f'<text x="{left + ratio * scale + 4:.1f}" y="{y + 13}">{_num(ratio, 3)}× '
                     f"<tspan fill=\"#5b6472\">({escape(label)})</tspan></text>")
    x = left + scale
    parts.append(
        f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 16}" stroke="{DRIFT_COLOUR}" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">threshold (1×)</text>')
    parts.append("</svg>")
    return "".join(parts)


def distribution_svg(feature: FeatureDrift) -> str:
    """Reference vs current fractions per bin (numeric) or category, as paired bars."""
    n = max(len(feature.bins), 1)
    width, height, pad_l, pad_b = 340, 190, 34, 54
    # Labels are rotated 40 degrees down-right, so the last ones reach past the plot: the
    # canvas gets a right margin as wide as a rotated 18-character label instead of clipping it.
    label_room = 70
    plot_w, plot_h = width - pad_l - 6, height - pad_b - 10
    top = max([*feature.reference_fractions, *feature.current_fractions, 0.01])
    group = plot_w / n
    bar = max(group / 2 - 2, 1)
    parts = [
        f'<svg class="plot distribution" role="img" aria-label="{escape(feature.name)} distribution" '
        f'width="{width + label_room}" height="{height + label_room // 2}" '
        f'viewBox="0 0 {width + label_room} {height + label_room // 2}">',
        f'<line x1="{pad_l}" y1="{10 + plot_h}" x2="{width - 6}" y2="{10 + plot_h}" stroke="#9aa3b0"/>',
        f'<text x="{pad_l - 4}" y="16" text-anchor="end">{top:.0%}</text>',
    ]
    for i, label in enumerate(feature.bins):
        x0 = pad_l + i * group + 1
        for j, (frac, colour, side) in enumerate(
            (
                (feature.reference_fractions[i], REF_COLOUR, "reference"),
                (feature.current_fractions[i], CUR_COLOUR, "current"),
            )
        ):
            h = plot_h * frac / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{10 + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)} {side}: '
                f"{frac:.2%}</title></rect>"
            )
        lx, ly = x0 + bar, 14 + plot_h
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" transform="rotate(40 {lx:.1f} {ly:.1f})">{escape(label[:18])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _summary_rows(report: DriftReport) -> str:
    rows = []
    for f in report.ranked():
        rows.append(
            f'<tr data-feature="{escape(f.name)}" data-drifted="{str(f.drifted).lower()}" '
            f'data-ratio="{f.effect_ratio}" data-psi="{f.psi if math.isfinite(f.psi) else 0}" '
            f'data-p="{f.p_value if math.isfinite(f.p_value) else 1}">'
            f'<td>{escape(f.name)}</td><td>{f.kind}</td><td class="effect" data-effect="{_num(f.effect)}">'
            f"{_effect_cell(f)}</td><td>{_num(f.p_value)}</td>"
            f"<td>{_num(f.reference_null_rate, 3)} → {_num(f.current_null_rate, 3)}</td>"
            f"<td>{_num(f.psi)}</td><td>{f.test} {_num(f.statistic)}</td>"
            f'<td class="status">{status_html(f)}</td></tr>'
        )
    return "".join(rows)


def status_html(f: FeatureDrift) -> str:
    """``drift: effect, test`` with the signals the rule decided on; signals that fired but decided
    nothing (PSI under the effect rule) follow as context, never as a cause."""
    also = f' <small class="context">(also: {escape(", ".join(f.context))})</small>' if f.context else ""
    if f.drifted:
        return f'<span class="bad">drift</span>: {escape(", ".join(f.decided_by))}{also}'
    return f'<span class="ok">ok</span>{also}'


def _effect_cell(f: FeatureDrift) -> str:
    """Effect size against its threshold (``FeatureDrift.effect_text``): what the default rule
    decides on; the p-value next to it is context (it confirms, and decides alone on few rows)."""
    return escape(f.effect_text())


def script_hash(script: str = _SCRIPT) -> str:
    """CSP source expression allowing exactly the report's inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def render_html(report: DriftReport, title: str = "Shipway drift report") -> str:
    """The whole report as one HTML document with no external references."""
    drifted = report.drifted_features
    verdict = (
        f'<span class="bad">{len(drifted)} of {len(report.features)} features drifted</span>'
        if drifted
        else f'<span class="ok">no drift in {len(report.features)} features</span>'
    )
    missing = (
        f'<p class="bad">Missing from the current window: {escape(", ".join(report.missing_features))}</p>'
        if report.missing_features
        else ""
    )
    figures = "".join(
        f'<figure data-feature="{escape(f.name)}" data-drifted="{str(f.drifted).lower()}">'
        f"<figcaption>{escape(f.name)} <small>({f.kind}, {_effect_cell(f)})</small></figcaption>"
        f"{distribution_svg(f)}</figure>"
        for f in report.ranked()
    )
    csp = (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src '{script_hash()}'; base-uri 'none'; form-action 'none'"
    )
    t = report.thresholds
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body data-report-ready="false">
<h1>{escape(title)}</h1>
<p class="meta">Generated {escape(report.generated_at)} · reference rows {report.reference_rows} ·
current rows {report.current_rows} · rule {t.rule}: Wasserstein (sd) &gt; {t.wasserstein}, Jensen-Shannon
&gt; {t.jensen_shannon}, confirmed by p &lt; {t.p_value} (the test alone below {t.small_sample} rows), null rate
moved &gt; {t.null_rate} · PSI &gt; {t.psi} shown for reference</p>
<p>{verdict}</p>{missing}
<h2>Effect size ÷ threshold by feature</h2>{effect_ranking_svg(report)}
<h2>Summary</h2>
<label><input type="checkbox" id="only-drifted"> show drifted features only</label>
<table id="summary"><thead><tr><th>feature</th><th>kind</th><th data-sort="ratio">effect size vs threshold</th>
<th data-sort="p">p-value</th><th>null rate (ref → cur)</th><th data-sort="psi">PSI (context)</th>
<th>test statistic</th><th>status (decided by)</th></tr></thead>
<tbody>{_summary_rows(report)}</tbody></table>
<h2>Distributions</h2>
<p class="legend"><span><i class="sw" style="background:{REF_COLOUR}"></i>reference</span>
<span><i class="sw" style="background:{CUR_COLOUR}"></i>current</span></p>
<div class="grid">{figures}</div>
<script>{_SCRIPT}</script>
</body></html>
"""
