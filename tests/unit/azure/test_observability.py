"""Observability on Azure: diagnostics to Log Analytics, SLO alerts, optional Prometheus/Grafana."""

from __future__ import annotations

import dataclasses
import re

import pytest

from components.azure import AzureTarget, MonitoredResources, Observability
from components.azure.observability import drift_query, prometheus_rules
from components.common import ObservabilityArgs
from shipway_core.config import AzureSettings, SloSettings
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.azure import azure_rules, burn_log_alerts, iso_duration
from shipway_core.observability.promql import EXTRA_METRICS, SERVING_METRICS, base_metric, metric_names
from shipway_core.observability.rules import generate_rules
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, output_is_secret, record_azure, role_id
from tests.unit.drift import live_effects

ARGS = ObservabilityArgs("prod", TAGS, endpoints={"iris": "https://iris/score"}, latency_p99_ms=300.0,
                         drift_psi=0.25, max_error_rate=0.02)
MONITORED = MonitoredResources(
    log_analytics_workspace_id="logs-id",
    diagnostics={"workspace": "ws-id", "endpoint-iris": "endpoint-id"},
    endpoint_ids={"iris": "endpoint-id"},
    endpoint_names={"iris": "iris-prod-abc"},
    application_insights_connection_string="InstrumentationKey=abc",
)


def _record(settings: AzureSettings | None = None) -> Recording:
    target = AzureTarget("rg", "westeurope", settings or AzureSettings(alert_emails=("oncall@example.com",)))
    return record_azure(lambda: Observability("obs", ARGS, target, MONITORED))


@pytest.fixture(scope="module")
def rec() -> Recording:
    return _record()


def test_children_without_managed_prometheus(rec: Recording) -> None:
    assert sorted((r.type, r.name) for r in rec.resources) == [
        ("azure-native:monitor:ActionGroup", "obs-actions"),
        ("azure-native:monitor:DiagnosticSetting", "obs-diag-endpoint-iris"),
        ("azure-native:monitor:DiagnosticSetting", "obs-diag-workspace"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-availability-page"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-availability-ticket"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-drift-jensen-shannon"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-drift-null-rate"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-drift-wasserstein"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-latency-page"),
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-latency-ticket"),
        ("shipway:azure:Observability", "obs"),
    ]


def test_diagnostics_send_all_logs_and_metrics_to_log_analytics(rec: Recording) -> None:
    diag = rec.one("azure-native:monitor:DiagnosticSetting", "obs-diag-endpoint-iris").inputs
    assert diag == {
        "name": "shipway-endpoint-iris",
        "resourceUri": "endpoint-id",
        "workspaceId": "logs-id",
        "logAnalyticsDestinationType": "Dedicated",
        "logs": [{"categoryGroup": "allLogs", "enabled": True}],
        "metrics": [{"category": "AllMetrics", "enabled": True}],
    }


def test_action_group_notifies_the_configured_addresses(rec: Recording) -> None:
    group = rec.one("azure-native:monitor:ActionGroup").inputs
    assert group["emailReceivers"] == [
        {"name": "email-0", "emailAddress": "oncall@example.com", "useCommonAlertSchema": True}]
    assert group["groupShortName"] == "shipwayprod"
    assert group["tags"] == TAGS


@pytest.mark.parametrize(("name", "severity", "lookback", "every"), [
    ("obs-iris-availability-page", 1, "PT6H", "PT5M"),
    ("obs-iris-availability-ticket", 3, "P2D", "PT15M"),
    ("obs-iris-latency-page", 1, "PT6H", "PT5M"),
    ("obs-iris-latency-ticket", 3, "P2D", "PT15M"),
])
def test_burn_rate_log_alerts_without_managed_prometheus(rec: Recording, name: str, severity: int, lookback: str,
                                                         every: str) -> None:
    """Without managed Prometheus the SLOs still alert by burn rate: the generated KQL (evaluated on the
    shared scenarios in tests/unit/observability/test_azure_log_alerts.py) for the endpoint's name."""
    rule = rec.one("azure-native:monitor:ScheduledQueryRule", name).inputs
    expected = next(a for a in burn_log_alerts(ARGS.slo(), "iris", "iris-prod-abc") if f"obs-{a.name}" == name)
    assert (rule["kind"], rule["scopes"], rule["severity"]) == ("LogAlert", ["logs-id"], severity)
    assert (rule["overrideQueryTimeRange"], rule["evaluationFrequency"], rule["windowSize"]) == (lookback, every, every)
    (condition,) = rule["criteria"]["allOf"]
    assert condition["query"] == expected.query
    assert "EndpointName == 'iris-prod-abc'" in condition["query"]
    assert (condition["metricMeasureColumn"], condition["operator"], condition["threshold"]) == (
        "firing", "GreaterThan", 0)
    assert rule["actions"] == {"actionGroups": ["obs-actions-id"]}
    assert rule["tags"] == {**TAGS, "model-name": "iris"}


DRIFT_RULES = {s: f"obs-iris-drift-{s.replace('_', '-')}" for s in drift_decision.STATISTICS}


def _drift_rules(rec: Recording) -> dict[str, dict]:
    return {s: rec.one("azure-native:monitor:ScheduledQueryRule", name).inputs for s, name in DRIFT_RULES.items()}


def _log_alert_fires(rule: dict, line: dict) -> bool:
    """What the log alert decides over a window whose only console line is ``line`` (JSON in Message):
    the query's filters on the event and the sample guard, then max() of the effect field, then the
    condition (Maximum aggregation, GreaterThan the threshold)."""
    (condition,) = rule["criteria"]["allOf"]
    query = condition["query"]
    (event,) = re.findall(r"\| where tostring\(line\.event\) == '(\w+)'", query)
    (samples_field, minimum), = re.findall(r"\| where todouble\(line\.(\w+)\) >= (\d+)", query)
    (column, field), = re.findall(r"\| summarize (\w+) = max\(todouble\(line\.(\w+)\)\)$", query)
    assert (condition["metricMeasureColumn"], condition["timeAggregation"], condition["operator"]) == (
        column, "Maximum", "GreaterThan")
    if line.get("event") != event or float(line.get(samples_field, 0)) < int(minimum):
        return False  # no rows: max() of nothing, the alert does not fire
    return float(line[field]) > condition["threshold"]


def test_drift_log_alerts_decide_on_effect_size_with_the_stacks_thresholds(rec: Recording) -> None:
    rules = _drift_rules(rec)
    assert {s: r["criteria"]["allOf"][0]["threshold"] for s, r in rules.items()} == drift_decision.effect_thresholds(
        ARGS.slo())
    for statistic, rule in rules.items():
        assert (rule["scopes"], rule["kind"], rule["severity"]) == (["logs-id"], "LogAlert", 3)
        (condition,) = rule["criteria"]["allOf"]
        assert condition["query"] == drift_query("iris-prod-abc", statistic)
        assert "EndpointName == 'iris-prod-abc'" in condition["query"]
        assert f"line.max_{statistic}" in condition["query"] and "psi" not in condition["query"]
        assert "todouble(line.samples) >= 500" in condition["query"]
        assert rule["actions"] == {"actionGroups": ["obs-actions-id"]}
        assert rule["tags"] == {**TAGS, "model-name": "iris"}


def test_drift_log_alerts_follow_per_stack_thresholds() -> None:
    args = dataclasses.replace(ARGS, drift_wasserstein=0.2, drift_jensen_shannon=0.1, drift_null_rate=0.05)
    target = AzureTarget("rg", "westeurope", AzureSettings(alert_emails=("oncall@example.com",)))
    rec = record_azure(lambda: Observability("obs", args, target, MONITORED))
    assert {s: r["criteria"]["allOf"][0]["threshold"] for s, r in _drift_rules(rec).items()} == {
        "wasserstein": 0.2, "jensen_shannon": 0.1, "null_rate": 0.05}


@pytest.mark.parametrize("scenario", [*live_effects.REAL, *live_effects.NEGLIGIBLE])
def test_drift_log_alerts_fire_on_real_shifts_only_given_the_apps_live_effect_line(rec: Recording,
                                                                                   scenario: str) -> None:
    line = live_effects.drift_effects_line(scenario)
    fired = {s for s, rule in _drift_rules(rec).items() if _log_alert_fires(rule, line)}
    assert fired == ({live_effects.REAL[scenario]} if scenario in live_effects.REAL else set())


def test_drift_log_alerts_stay_quiet_below_the_minimum_window(rec: Recording) -> None:
    line = live_effects.drift_effects_line("share +10 points", rows=300)
    assert line["max_jensen_shannon"] > drift_decision.DEFAULT_THRESHOLDS["jensen_shannon"]
    assert not any(_log_alert_fires(rule, line) for rule in _drift_rules(rec).values())


def test_outputs_without_prometheus(rec: Recording) -> None:
    obs = rec.result
    assert resolve(obs.prometheus_workspace_id) is None
    assert resolve(obs.grafana_url) is None
    assert resolve(obs.alert_names) == [
        "obs-iris-availability-page", "obs-iris-availability-ticket", "obs-iris-latency-page",
        "obs-iris-latency-ticket", "obs-iris-drift-wasserstein", "obs-iris-drift-jensen-shannon",
        "obs-iris-drift-null-rate"]
    assert resolve(obs.otel_config)["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "InstrumentationKey=abc"
    assert output_is_secret(obs.otel_config)


def test_managed_prometheus_and_grafana_when_configured() -> None:
    rec = _record(dataclasses.replace(AzureSettings(), managed_prometheus=True, managed_grafana=True))
    amw = rec.one("azure-native:monitor:AzureMonitorWorkspace", "obs-prometheus").inputs
    assert amw["publicNetworkAccess"] == "Disabled"
    rules = rec.one("azure-native:alertsmanagement:PrometheusRuleGroup", "obs-rules").inputs
    # One burn-rate definition per SLO and severity: the Prometheus rules, no log-alert duplicates.
    assert sorted(r.name for r in rec.resources if r.type == "azure-native:monitor:ScheduledQueryRule") == [
        "obs-iris-drift-jensen-shannon", "obs-iris-drift-null-rate", "obs-iris-drift-wasserstein"]
    assert rules["scopes"] == ["obs-prometheus-id"]
    slo = SloSettings(availability=ARGS.availability, latency_p99_ms=300.0, drift_psi=0.25)
    shared = generate_rules(slo, ["iris"], "prod")
    # The very expressions every other target runs, in the same order.
    assert [r["expression"] for r in rules["rules"]] == [r["expr"] for g in shared["groups"] for r in g["rules"]]
    burn_names = ("ShipwayAvailabilityBudgetBurn", "ShipwayLatencyBudgetBurn")
    burns = [r for r in rules["rules"] if r.get("alert") in burn_names]
    assert [(r["alert"], r["severity"], "for" in r) for r in burns] == [
        ("ShipwayAvailabilityBudgetBurn", 1, False), ("ShipwayAvailabilityBudgetBurn", 3, False),
        ("ShipwayLatencyBudgetBurn", 1, False), ("ShipwayLatencyBudgetBurn", 3, False),
    ]
    records = {r["record"]: r["expression"] for r in rules["rules"] if "record" in r}
    assert 'le="0.3"' in records["model:shipway_request_slow:ratio_rate5m"]
    assert next(r for r in rules["rules"] if r.get("alert") == "ShipwayEndpointDown")["for"] == "PT2M"
    alerts = [r for r in rules["rules"] if "alert" in r]
    assert {a["actionGroupId"] for r in alerts for a in r["actions"]} == {"obs-actions-id"}
    grafana = rec.one("azure-native:dashboard:Grafana", "obs-grafana").inputs
    assert grafana["identity"] == {"type": "SystemAssigned"}
    assert grafana["properties"]["publicNetworkAccess"] == "Disabled"
    assert grafana["properties"]["apiKey"] == "Disabled"
    assert grafana["properties"]["grafanaIntegrations"] == {
        "azureMonitorWorkspaceIntegrations": [{"azureMonitorWorkspaceResourceId": "obs-prometheus-id"}]}
    reader = rec.one("azure-native:authorization:RoleAssignment", "obs-grafana-reader").inputs
    assert reader["roleDefinitionId"] == role_id("b0d8363b-8ddd-447d-831f-62ca05bff136")
    assert reader["scope"] == "obs-prometheus-id"
    assert reader["principalId"] == "obs-grafana-principal"
    assert resolve(rec.result.grafana_url) == "https://obs-grafana.grafana.azure.com"


def test_every_endpoint_needs_an_id() -> None:
    monitored = dataclasses.replace(MONITORED, endpoint_ids={})
    with pytest.raises(ValueError) as err:
        Observability("obs", ARGS, AzureTarget("rg", "westeurope"), monitored)
    assert str(err.value) == (
        "endpoints: ['iris'] are not valid; every model in args.endpoints needs an endpoint id in "
        "monitored.endpoint_ids and vice versa"
    )


def test_prometheus_rules_only_read_metrics_the_serving_app_exports() -> None:
    rules = prometheus_rules(ARGS, "group-id")
    recorded = {r.record for r in rules if r.record}
    for rule in rules:
        names = {base_metric(n) for n in metric_names(rule.expression)}
        assert names, rule.alert or rule.record
        assert names <= SERVING_METRICS | EXTRA_METRICS | recorded, (rule.alert, names)


def test_azure_envelope_keeps_burn_alerts_without_for_and_maps_severity() -> None:
    assert (iso_duration("2m"), iso_duration("1d"), iso_duration("30s")) == ("PT2M", "P1D", "PT30S")
    with pytest.raises(ValueError, match="for: '1h30m' is not valid here"):
        iso_duration("1h30m")
    doc = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x > 1", "labels": {"severity": "urgent"}}]}]}
    with pytest.raises(ValueError, match="severity: 'urgent' is not valid; allowed: page, ticket"):
        azure_rules(doc)
