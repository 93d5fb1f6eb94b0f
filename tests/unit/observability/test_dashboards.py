"""Dashboard JSON structure: ids, layout, datasource, and the metric contract."""

from __future__ import annotations

import json

import pytest

from shipway_core.config import SloSettings
from shipway_core.observability.dashboards import (
    DRIFT_PANEL,
    DashboardBuilder,
    Panel,
    Target,
    all_dashboards,
    endpoint_dashboard,
    platform_dashboard,
)
from shipway_core.observability.delivery import DELIVERY_METRIC_NAMES
from shipway_core.observability.promql import EXTRA_METRICS, SERVING_METRICS, base_metric, metric_names
from shipway_core.observability.rules import generate_rules, recorded_names

SLO = SloSettings()
DASHBOARDS = all_dashboards(["iris", "churn"], "prod", SLO)


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def test_one_dashboard_per_endpoint_plus_overview() -> None:
    assert sorted(DASHBOARDS) == [
        "shipway-prod-churn.json",
        "shipway-prod-iris.json",
        "shipway-prod-platform.json",
    ]
    assert len({d["uid"] for d in DASHBOARDS.values()}) == 3


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_structure(name: str) -> None:
    dash = DASHBOARDS[name]
    json.dumps(dash)
    assert dash["schemaVersion"] >= 39
    assert dash["templating"]["list"][0] == {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for i, a in enumerate(panels):
        pos = a["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        for b in panels[i + 1 :]:
            assert not _overlap(pos, b["gridPos"]), f"{a['title']} overlaps {b['title']}"
        if a["type"] == "row":
            continue
        assert a["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in a["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids))
        assert all(t["datasource"]["uid"] == "${datasource}" for t in a["targets"])


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_queries_read_only_exported_metrics_or_recorded_rules(name: str) -> None:
    known = SERVING_METRICS | EXTRA_METRICS | set(recorded_names(generate_rules(SLO, ["iris", "churn"], "prod")))
    for panel in DASHBOARDS[name]["panels"]:
        for target in panel.get("targets", []):
            names = {base_metric(n) for n in metric_names(target["expr"])}
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            assert names <= known, f"{panel['title']} queries unknown metrics {names - known}"


def test_endpoint_dashboard_covers_the_signals_of_issue_9() -> None:
    dash = endpoint_dashboard("iris", "prod", SLO)
    by_title = {p["title"]: p for p in dash["panels"]}
    exprs = {title: [t["expr"] for t in p.get("targets", [])] for title, p in by_title.items()}
    assert exprs["Latency"] == [
        'model:shipway_request_duration_seconds:p50_rate5m{model="iris"}',
        'model:shipway_request_duration_seconds:p99_rate5m{model="iris"}',
    ]
    assert by_title["Latency"]["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {
        "color": "red",
        "value": 0.25,
    }
    assert "shipway_errors_total" in exprs["Errors by kind"][0] and "by (kind)" in exprs["Errors by kind"][0]
    assert "shipway_requests_total" in exprs["Traffic by status"][0]
    assert "shipway_inflight_requests" in exprs["In-flight requests (saturation)"][0]
    assert "by (feature, statistic) (shipway_feature_drift_effect" in exprs[DRIFT_PANEL][0]
    assert "by (class) (rate(shipway_predictions_total" in exprs["Prediction class distribution"][0]
    assert by_title["Serving version timeline"]["type"] == "state-timeline"
    assert 'shipway_model_info{model="iris",environment="prod"}' in exprs["Serving version timeline"][0]
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "version"]


def test_builder_wraps_rows_without_overlap_and_validates_panels() -> None:
    b = DashboardBuilder(title="t", uid="t")
    b.add(Panel("a", (Target("x"),), width=16, height=4)).add(Panel("b", (Target("x"),), width=16, height=6))
    b.row("r").add(Panel("c", (Target("x"),), width=24))
    pos = [p["gridPos"] for p in b.build()["panels"]]
    assert pos == [
        {"x": 0, "y": 0, "w": 16, "h": 4},
        {"x": 0, "y": 4, "w": 16, "h": 6},
        {"x": 0, "y": 10, "w": 24, "h": 1},
        {"x": 0, "y": 11, "w": 24, "h": 8},
    ]
    with pytest.raises(ValueError, match="width: 25 is not valid; use 1-24 grid columns"):
        Panel("wide", (Target("x"),), width=25)
    with pytest.raises(ValueError, match="targets: panel 'empty' has no queries"):
        Panel("empty", ())


def test_endpoint_dashboard_shows_budget_remaining_and_burn_rates_per_slo() -> None:
    dash = endpoint_dashboard("iris", "prod", SloSettings(availability=0.999, latency_objective=0.95))
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}
    assert exprs["Error budget remaining: availability (30d)"] == [
        '1 - avg_over_time(model:shipway_request_errors:ratio_rate5m{model="iris"}[30d]) / 0.001'
    ]
    assert exprs["Error budget remaining: latency (30d)"] == [
        '1 - avg_over_time(model:shipway_request_slow:ratio_rate5m{model="iris"}[30d]) / 0.05'
    ]
    assert exprs["Burn rate: latency"] == [
        f'model:shipway_request_slow:ratio_rate{w}{{model="iris"}} / 0.05' for w in ("5m", "1h", "6h", "1d", "3d")
    ]


def test_platform_dashboard_shows_the_four_delivery_figures_of_its_environment() -> None:
    dash = platform_dashboard("prod", SLO)
    titles = [p["title"] for p in dash["panels"]]
    start = titles.index("Delivery (from the audit trail)")
    assert dash["panels"][start]["type"] == "row"
    panels = {p["title"]: p for p in dash["panels"][start + 1:]}
    first = {title: p["targets"][0]["expr"] for title, p in panels.items()}
    assert first == {
        "Deployments per day": 'shipway_delivery_deployments_per_day{env="prod"}',
        "Lead time, registration to deploy (median)":
            'shipway_delivery_lead_time_hours{env="prod"}',
        "Change failure rate": 'shipway_delivery_change_failure_ratio{env="prod"}',
        "Time to restore (median)": 'shipway_delivery_time_to_restore_minutes{env="prod"}',
    }
    assert panels["Change failure rate"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    names = {n for p in panels.values() for t in p["targets"] for n in metric_names(t["expr"])}
    assert names == set(DELIVERY_METRIC_NAMES) - {"shipway_delivery_deployments", "shipway_delivery_incidents",
                                                  "shipway_delivery_incident_minutes"}
