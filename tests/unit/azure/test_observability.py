"""Observability on Azure: diagnostics to Log Analytics, SLO alerts, optional Prometheus/Grafana."""

from __future__ import annotations

import dataclasses

import pytest

from components.azure import AzureTarget, MonitoredResources, Observability
from components.azure.observability import drift_query, prometheus_rules
from components.common import ObservabilityArgs
from shipway_core.config import AzureSettings, SloSettings
from shipway_core.observability.azure import azure_rules, burn_log_alerts, iso_duration
from shipway_core.observability.promql import EXTRA_METRICS, SERVING_METRICS, base_metric, metric_names
from shipway_core.observability.rules import generate_rules
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, output_is_secret, record_azure, role_id

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
        ("azure-native:monitor:ScheduledQueryRule", "obs-iris-drift"),
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


def test_drift_log_alert(rec: Recording) -> None:
    rule = rec.one("azure-native:monitor:ScheduledQueryRule", "obs-iris-drift").inputs
    assert rule["scopes"] == ["logs-id"]
    assert rule["kind"] == "LogAlert"
    (condition,) = rule["criteria"]["allOf"]
    assert condition["query"] == drift_query("iris-prod-abc")
    assert condition["metricMeasureColumn"] == "drift_psi"
    assert (condition["operator"], condition["threshold"]) == ("GreaterThan", 0.25)
    assert rule["actions"] == {"actionGroups": ["obs-actions-id"]}


def test_outputs_without_prometheus(rec: Recording) -> None:
    obs = rec.result
    assert resolve(obs.prometheus_workspace_id) is None
    assert resolve(obs.grafana_url) is None
    assert resolve(obs.alert_names) == [
        "obs-iris-availability-page", "obs-iris-availability-ticket", "obs-iris-latency-page",
        "obs-iris-latency-ticket", "obs-iris-drift"]
    assert resolve(obs.otel_config)["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "InstrumentationKey=abc"
    assert output_is_secret(obs.otel_config)


def test_managed_prometheus_and_grafana_when_configured() -> None:
    rec = _record(dataclasses.replace(AzureSettings(), managed_prometheus=True, managed_grafana=True))
    amw = rec.one("azure-native:monitor:AzureMonitorWorkspace", "obs-prometheus").inputs
    assert amw["publicNetworkAccess"] == "Disabled"
    rules = rec.one("azure-native:alertsmanagement:PrometheusRuleGroup", "obs-rules").inputs
    # One burn-rate definition per SLO and severity: the Prometheus rules, no log-alert duplicates.
    assert sorted(r.name for r in rec.resources if r.type == "azure-native:monitor:ScheduledQueryRule") == [
        "obs-iris-drift"]
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
