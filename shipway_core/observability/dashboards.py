"""Dashboards as code: typed builders producing Grafana dashboard JSON (schemaVersion 39).

Plain dataclasses instead of a dashboard SDK: the output is a JSON document Grafana imports
(provisioning file or API), the builders keep panel ids unique and lay panels out on Grafana's
24-column grid without overlaps, and every query goes through the same metric contract the
alert rules use (:mod:`shipway_core.observability.promql` checks it in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipway_core.config import SloSettings
from shipway_core.observability import drift
from shipway_core.observability.rules import JOB, error_ratio_record, latency_record
from shipway_core.observability.slo import SLO_PERIOD_DAYS, Slo, slos

SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Drift is drawn as each effect size divided by its stack threshold: the measure ShipwayFeatureDrift
# decides on (PSI is exported for reference only), with the alert's line at 1.
DRIFT_PANEL = "Feature drift (effect size ÷ threshold; alerts above 1 with ≥ 500 samples)"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    """A panel before layout: what to show and how big it is."""

    title: str
    targets: tuple[Target, ...]
    kind: str = "timeseries"  # timeseries | stat | state-timeline | heatmap | table
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float, str], ...] = ()  # (value, colour) steps above the green base
    stacked: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.width <= GRID_WIDTH:
            raise ValueError(f"width: {self.width} is not valid; use 1-{GRID_WIDTH} grid columns")
        if not self.targets:
            raise ValueError(f"targets: panel {self.title!r} has no queries")


@dataclass
class DashboardBuilder:
    """Collects rows and panels, assigning ids and grid positions in reading order."""

    title: str
    uid: str
    tags: tuple[str, ...] = ()
    variables: list[dict[str, Any]] = field(default_factory=list)
    _panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    def _next_id(self) -> int:
        return len(self._panels) + 1

    def _newline(self) -> None:
        self._y += self._row_height
        self._x, self._row_height = 0, 0

    def row(self, title: str) -> DashboardBuilder:
        """Start a full-width collapsible row header."""
        if self._x:
            self._newline()
        self._panels.append(
            {
                "id": self._next_id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self._y, "w": GRID_WIDTH, "h": 1},
                "panels": [],
            }
        )
        self._y += 1
        return self

    def add(self, panel: Panel) -> DashboardBuilder:
        """Place ``panel`` after the previous one, wrapping to a new line when it does not fit."""
        if self._x + panel.width > GRID_WIDTH:
            self._newline()
        pos = {"x": self._x, "y": self._y, "w": panel.width, "h": panel.height}
        self._panels.append(_panel_json(panel, self._next_id(), pos))
        self._x += panel.width
        self._row_height = max(self._row_height, panel.height)
        return self

    def build(self) -> dict[str, Any]:
        """The dashboard JSON."""
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "30s",
            "timezone": "utc",
            "templating": {"list": [datasource_variable(), *self.variables]},
            "annotations": {"list": []},
            "panels": list(self._panels),
        }


def datasource_variable() -> dict[str, Any]:
    """The ``$datasource`` variable every panel queries through (no hard-coded datasource uid)."""
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def query_variable(name: str, query: str, include_all: bool = True) -> dict[str, Any]:
    """A label-values variable such as the model version picker."""
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "includeAll": include_all,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "sort": 3,
        "current": {},
        "hide": 0,
    }


def _panel_json(panel: Panel, panel_id: int, pos: dict[str, int]) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in panel.thresholds]
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "stacking": {"mode": "percent" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": t.expr,
                "legendFormat": t.legend,
                "instant": t.instant,
                "range": not t.instant,
                **({"format": "heatmap"} if panel.kind == "heatmap" else {}),
            }
            for i, t in enumerate(panel.targets)
        ],
    }


def _slo_panels(b: DashboardBuilder, objective: Slo, rec: str) -> None:
    """Budget left over the SLO period and the burn rate over each alert window, for one SLO."""
    budget = f"{objective.budget:.6g}"
    b.add(
        Panel(
            f"Error budget remaining: {objective.name} (30d)",
            # mean of the 5m ratio over the period (as Sloth does): unweighted by traffic, cheap to query
            (Target(f"1 - avg_over_time({objective.record('5m')}{rec}[{SLO_PERIOD_DAYS}d]) / {budget}", instant=True),),
            kind="stat",
            unit="percentunit",
            width=6,
            height=5,
            thresholds=((0.0, "red"), (0.25, "orange"), (0.5, "green")),
            description=f"Share of the {objective.name} error budget ({budget} of requests may be "
            f"{objective.bad_event}) not yet spent; below 0 the SLO is broken.",
        )
    )
    b.add(
        Panel(
            f"Burn rate: {objective.name}",
            tuple(Target(f"{objective.record(w)}{rec} / {budget}", w) for w in ("5m", "1h", "6h", "1d", "3d")),
            width=6,
            height=5,
            thresholds=((1.0, "yellow"), (3.0, "orange"), (6.0, "red")),
            description="1 = spending the budget exactly over 30 days. Tickets at 3 (1d) / 1 (3d), "
            "pages at 14.4 (1h) / 6 (6h), each confirmed by its short window.",
        )
    )


def endpoint_dashboard(model: str, environment: str, slo: SloSettings) -> dict[str, Any]:
    """One endpoint: SLO signals first (what pages), then the model's own health."""
    sel = f'{{job="{JOB}",model="{model}",version=~"$version"}}'
    rec = f'{{model="{model}"}}'
    b = DashboardBuilder(
        title=f"Shipway endpoint: {model} ({environment})",
        uid=f"shipway-{environment}-{model}"[:40],
        tags=("shipway", environment, "endpoint"),
    )
    b.variables.append(query_variable("version", f'label_values(shipway_model_info{{model="{model}"}}, version)'))
    b.row("Service level")
    for objective in slos(slo):
        _slo_panels(b, objective, rec)
    b.add(
        Panel(
            "Latency",
            (Target(f"{latency_record('p50')}{rec}", "p50"), Target(f"{latency_record('p99')}{rec}", "p99")),
            unit="s",
            width=12,
            height=5,
            thresholds=((slo.latency_p99_ms / 1000.0, "red"),),
        )
    )
    b.add(
        Panel(
            "Traffic by status",
            (Target(f"sum by (status_class) (rate(shipway_requests_total{sel}[{RATE}]))", "{{status_class}}"),),
            unit="reqps",
            width=8,
        )
    )
    b.add(
        Panel(
            "Errors by kind",
            (Target(f"sum by (kind) (rate(shipway_errors_total{sel}[{RATE}]))", "{{kind}}"),),
            unit="reqps",
            width=8,
        )
    )
    b.add(
        Panel(
            "In-flight requests (saturation)",
            (Target(f'sum(shipway_inflight_requests{{job="{JOB}",model="{model}"}})', "in flight"),),
            width=8,
        )
    )
    b.row("Model")
    b.add(
        Panel(
            DRIFT_PANEL,
            (Target(drift.effect_ratio_promql(slo, sel, by="feature"), "{{feature}} {{statistic}}"),),
            width=12,
            thresholds=((1.0, "red"),),
        )
    )
    b.add(
        Panel(
            "Drift samples",
            (Target(f"max by (version) (shipway_drift_samples{sel})", "v{{version}}"),),
            width=6,
        )
    )
    b.add(
        Panel(
            "Model quality (late labels)",
            (Target(f'shipway_model_quality{{model="{model}",version=~"$version"}}', "{{metric}} v{{version}}"),),
            unit="percentunit",
            width=6,
        )
    )
    b.add(
        Panel(
            "Prediction class distribution",
            (Target(f"sum by (class) (rate(shipway_predictions_total{sel}[{RATE}]))", "{{class}}"),),
            width=12,
            stacked=True,
        )
    )
    b.add(
        Panel(
            "Prediction value distribution",
            (Target(f"sum by (le) (rate(shipway_prediction_value_bucket{sel}[{RATE}]))", "{{le}}"),),
            kind="heatmap",
            width=12,
        )
    )
    b.add(
        Panel(
            "Serving version timeline",
            (
                Target(
                    f'max by (version) (shipway_model_info{{model="{model}",environment="{environment}"}})',
                    "v{{version}}",
                ),
            ),
            kind="state-timeline",
            width=24,
            height=5,
            description="Which registry version served traffic when (promotions and rollbacks).",
        )
    )
    return b.build()


def platform_dashboard(environment: str, slo: SloSettings) -> dict[str, Any]:
    """Every endpoint of one environment at a glance (aggregates over whatever is serving)."""
    b = DashboardBuilder(
        title=f"Shipway platform ({environment})",
        uid=f"shipway-{environment}-platform",
        tags=("shipway", environment, "platform"),
    )
    b.row("Endpoints")
    b.add(Panel("Endpoints up", (Target(f'sum(up{{job="{JOB}"}})', instant=True),), kind="stat", width=4, height=5))
    b.add(
        Panel(
            "Models serving",
            (
                Target(
                    f'count(count by (model) (shipway_model_info{{environment="{environment}"}}))',
                    instant=True,
                ),
            ),
            kind="stat",
            width=4,
            height=5,
        )
    )
    b.add(
        Panel(
            "Drifted features",
            (
                Target(
                    drift.drifted_features_promql(slo),
                    instant=True,
                ),
            ),
            kind="stat",
            width=4,
            height=5,
            thresholds=((1.0, "orange"),),
        )
    )
    b.add(
        Panel(
            "Availability (1d) by model",
            (Target(f"1 - {error_ratio_record('1d')}", "{{model}}"),),
            unit="percentunit",
            width=12,
            height=5,
            thresholds=((slo.availability, "green"),),
        )
    )
    b.add(
        Panel(
            "Traffic by model",
            (Target(f'sum by (model) (rate(shipway_requests_total{{job="{JOB}"}}[{RATE}]))', "{{model}}"),),
            unit="reqps",
            width=12,
        )
    )
    b.add(
        Panel(
            "p99 latency by model",
            (Target(latency_record("p99"), "{{model}}"),),
            unit="s",
            width=12,
            thresholds=((slo.latency_p99_ms / 1000.0, "red"),),
        )
    )
    b.add(
        Panel(
            "Error budget burn (1h) by model and SLO",
            tuple(Target(f"{o.record('1h')} / {o.budget:.6g}", f"{{{{model}}}} {o.name}") for o in slos(slo)),
            width=12,
            thresholds=((14.4, "red"),),
        )
    )
    b.add(
        Panel(
            "In-flight requests by model",
            (Target(f'sum by (model) (shipway_inflight_requests{{job="{JOB}"}})', "{{model}}"),),
            width=12,
        )
    )
    b.row("Models")
    b.add(
        Panel(
            "Serving versions",
            (Target(f'shipway_model_info{{environment="{environment}"}}', "{{model}} v{{version}}"),),
            kind="state-timeline",
            width=24,
            height=6,
        )
    )
    b.add(
        Panel(
            "Largest drift effect ÷ its threshold, by model (alert above 1)",
            (Target(f"max by (model) {drift.effect_ratio_promql(slo, '', by='model')}", "{{model}}"),),
            width=12,
            thresholds=((1.0, "red"),),
        )
    )
    b.add(Panel("Model quality", (Target("shipway_model_quality", "{{model}} {{metric}}"),), width=12))
    _delivery_panels(b, environment)
    return b.build()


def _delivery_panels(b: DashboardBuilder, environment: str) -> None:
    """The four delivery figures (DORA keys) the audit trail yields, per model in this environment."""
    # No job selector: the local stack scrapes the exporter as DELIVERY_JOB, a cloud target may
    # push or scrape the same names under another job (docs/operating.md, "Delivery figures").
    sel = f'{{env="{environment}"}}'
    b.row("Delivery (from the audit trail)")
    b.add(Panel("Deployments per day", (Target(f"shipway_delivery_deployments_per_day{sel}", "{{model}}"),),
                width=6, description="Promotions that changed the pin, per day since the first one."))
    b.add(Panel("Lead time, registration to deploy (median)",
                (Target(f"shipway_delivery_lead_time_hours{sel}", "{{model}}"),), unit="h", width=6))
    b.add(Panel("Change failure rate", (Target(f"shipway_delivery_change_failure_ratio{sel}", "{{model}}"),),
                unit="percentunit", width=6, thresholds=((0.15, "orange"), (0.3, "red")),
                description="Deployments followed by a failed up, a failed verification or a rollback."))
    b.add(Panel("Time to restore (median)", (Target(f"shipway_delivery_time_to_restore_minutes{sel}", "{{model}}"),
                                             Target(f"shipway_delivery_unrestored_failures{sel} > 0",
                                                    "{{model}} unrestored")),
                unit="m", width=6, description="From a failed change to the next passing verification."))


def all_dashboards(models: list[str], environment: str, slo: SloSettings) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON for an environment (one per endpoint plus the overview)."""
    out = {f"shipway-{environment}-platform.json": platform_dashboard(environment, slo)}
    for model in sorted(models):
        out[f"shipway-{environment}-{model}.json"] = endpoint_dashboard(model, environment, slo)
    return out
