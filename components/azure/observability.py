"""Diagnostics, SLO alerts, managed Prometheus/Grafana and OTel export config on Azure Monitor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, access, client_config, grant
from components.common import ObservabilityArgs, validate_tags
from shipway_core.observability.azure import azure_rules
from shipway_core.observability.rules import generate_rules

_ENDPOINT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"


@dataclass
class MonitoredResources:
    """What the alerts and diagnostic settings watch (outputs of the other components).

    ``diagnostics`` maps a short, stable key (used in child names) to a resource id whose
    logs and metrics go to Log Analytics; ``endpoint_ids`` maps model name -> online endpoint id.
    """

    log_analytics_workspace_id: pulumi.Input[str]
    diagnostics: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    endpoint_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    endpoint_names: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    application_insights_connection_string: pulumi.Input[str] | None = None


def error_rate_query(endpoint_name: str) -> str:
    """KQL: share of 5xx responses in the endpoint traffic log (the error-rate SLI)."""
    return (
        "AmlOnlineEndpointTrafficLog\n"
        f"| where EndpointName == '{endpoint_name}'\n"
        "| summarize total = count(), errors = countif(toint(ResponseCode) >= 500)\n"
        "| extend error_rate = iff(total == 0, 0.0, todouble(errors) / todouble(total))"
    )


def drift_query(endpoint_name: str) -> str:
    """KQL: the worst feature PSI in the serving app's ``drift`` log events (``psi`` field)."""
    return (
        "AmlOnlineEndpointConsoleLog\n"
        f"| where EndpointName == '{endpoint_name}'\n"
        "| extend line = parse_json(Message)\n"
        "| where tostring(line.event) == 'drift'\n"
        "| summarize drift_psi = max(todouble(line.psi))"
    )


def prometheus_rules(
    args: ObservabilityArgs, action_group_id: pulumi.Input[str]
) -> list[azure_native.alertsmanagement.PrometheusRuleArgs]:
    """The shared rule file (same SLIs, burn-rate alerts and names as every target) as managed-
    Prometheus rules; alerts notify the action group."""
    rules = azure_rules(generate_rules(args.slo(), sorted(args.endpoints), args.environment))
    return [
        azure_native.alertsmanagement.PrometheusRuleArgs(record=r["record"], expression=r["expression"], enabled=True)
        if "record" in r
        else azure_native.alertsmanagement.PrometheusRuleArgs(
            alert=r["alert"], severity=r["severity"], for_=r.get("for"), enabled=True, expression=r["expression"],
            labels=r["labels"], annotations=r["annotations"],
            actions=[azure_native.alertsmanagement.PrometheusRuleGroupActionArgs(action_group_id=action_group_id)],
        )
        for r in rules
    ]


class Observability(pulumi.ComponentResource):
    """Azure Monitor wiring for one environment.

    Diagnostic settings send every watched resource's logs and metrics to Log Analytics;
    per endpoint, a metric alert watches p99 latency and scheduled-query alerts watch the
    error rate and drift; all notify one action group. Managed Prometheus (+ rule group) and
    managed Grafana are created only when the stack turns them on.
    """

    action_group_id: pulumi.Output[str]
    """ARM id of the action group every alert notifies."""
    alert_names: pulumi.Output[list[str]]
    """Logical names of the alert rules created."""
    prometheus_workspace_id: pulumi.Output[str | None]
    """Azure Monitor workspace (managed Prometheus) id, or None when not configured."""
    grafana_url: pulumi.Output[str | None]
    """Managed Grafana endpoint, or None when not configured."""
    otel_config: pulumi.Output[dict[str, str]]
    """Environment variables an OpenTelemetry SDK needs to export here."""

    def __init__(self, name: str, args: ObservabilityArgs, target: AzureTarget, monitored: MonitoredResources,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        if args.log_retention_days not in (None, target.settings.log_retention_days):
            raise ValueError(
                f"log_retention_days: {args.log_retention_days!r} is not valid on Azure; logs are kept by the "
                f"Log Analytics workspace, set azure.logRetentionDays (now {target.settings.log_retention_days})")
        max_error_rate = args.max_error_rate
        if not 0 < max_error_rate < 1:
            raise ValueError(
                f"max_error_rate: {max_error_rate!r} is not valid; use a fraction between 0 and 1")
        unmatched = sorted(set(args.endpoints) ^ set(monitored.endpoint_ids))
        if unmatched:
            raise ValueError(
                f"endpoints: {unmatched!r} are not valid; every model in args.endpoints needs an "
                "endpoint id in monitored.endpoint_ids and vice versa"
            )
        super().__init__("shipway:azure:Observability", name, None, opts)
        self._name, self._args, self._target, self._tags = name, args, target, dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        settings = target.settings

        self.actions = azure_native.monitor.ActionGroup(
            f"{name}-actions",
            resource_group_name=target.resource_group_name,
            location="global",
            group_short_name=f"shipway{args.environment}"[:12],
            enabled=True,
            email_receivers=[
                {"name": f"email-{i}", "email_address": email, "use_common_alert_schema": True}
                for i, email in enumerate(settings.alert_emails)
            ],
            tags=self._tags,
            opts=child,
        )

        self.diagnostics = [
            azure_native.monitor.DiagnosticSetting(
                f"{name}-diag-{key}",
                name=f"shipway-{key}",
                resource_uri=resource_id,
                workspace_id=monitored.log_analytics_workspace_id,
                log_analytics_destination_type="Dedicated",
                logs=[{"category_group": "allLogs", "enabled": True}],
                metrics=[{"category": "AllMetrics", "enabled": True}],
                opts=child,
            )
            for key, resource_id in sorted(monitored.diagnostics.items())
        ]

        self.alerts: list[pulumi.CustomResource] = []
        for model, endpoint_id in sorted(monitored.endpoint_ids.items()):
            endpoint_name = monitored.endpoint_names.get(model, model)
            self.alerts.append(self._latency_alert(model, endpoint_id))
            self.alerts.append(self._query_alert(
                f"{model}-errors", monitored.log_analytics_workspace_id,
                pulumi.Output.from_input(endpoint_name).apply(error_rate_query),
                "error_rate", max_error_rate, severity=1,
                description=f"{model}: 5xx share above {max_error_rate:g}"))
            self.alerts.append(self._query_alert(
                f"{model}-drift", monitored.log_analytics_workspace_id,
                pulumi.Output.from_input(endpoint_name).apply(drift_query),
                "drift_psi", args.drift_psi, severity=3,
                description=f"{model}: feature drift PSI above {args.drift_psi:g}"))

        self.prometheus = None
        self.rules = None
        if settings.managed_prometheus:
            self.prometheus = azure_native.monitor.AzureMonitorWorkspace(
                f"{name}-prometheus",
                resource_group_name=target.resource_group_name,
                location=target.location,
                public_network_access=access(target.private),
                tags=self._tags,
                opts=child,
            )
            self.rules = azure_native.alertsmanagement.PrometheusRuleGroup(
                f"{name}-rules",
                resource_group_name=target.resource_group_name,
                location=target.location,
                scopes=[self.prometheus.id],
                enabled=True,
                interval="PT1M",
                description=f"Shipway SLO alerts ({args.environment})",
                rules=prometheus_rules(args, self.actions.id),
                tags=self._tags,
                opts=child,
            )

        self.grafana = None
        if settings.managed_grafana:
            self.grafana = self._grafana()

        self.action_group_id = self.actions.id
        self.alert_names = pulumi.Output.from_input([a._name for a in self.alerts])
        none: pulumi.Output[None] = pulumi.Output.from_input(None)
        self.prometheus_workspace_id = self.prometheus.id if self.prometheus else none
        self.grafana_url = (self.grafana.properties.apply(lambda p: p.endpoint) if self.grafana
                            else none)
        self.otel_config = self._otel_config(monitored)
        self.register_outputs({
            "action_group_id": self.action_group_id,
            "alert_names": self.alert_names,
            "prometheus_workspace_id": self.prometheus_workspace_id,
            "grafana_url": self.grafana_url,
            "otel_config": self.otel_config,
        })

    def _latency_alert(self, model: str, endpoint_id: pulumi.Input[str]) -> azure_native.monitor.MetricAlert:
        """p99 request latency of the endpoint above the SLO for 5 minutes."""
        args = self._args
        return azure_native.monitor.MetricAlert(
            f"{self._name}-{model}-latency",
            resource_group_name=self._target.resource_group_name,
            location="global",
            description=f"{model}: p99 latency above {args.latency_p99_ms:g} ms",
            severity=2,
            enabled=True,
            scopes=[endpoint_id],
            target_resource_type=_ENDPOINT_NAMESPACE,
            evaluation_frequency="PT1M",
            window_size="PT5M",
            auto_mitigate=True,
            criteria=azure_native.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[azure_native.monitor.MetricCriteriaArgs(
                    criterion_type="StaticThresholdCriterion",
                    name="p99-latency",
                    metric_namespace=_ENDPOINT_NAMESPACE,
                    metric_name="RequestLatency_P99",
                    operator="GreaterThan",
                    threshold=args.latency_p99_ms,
                    time_aggregation="Average",
                )],
            ),
            actions=[{"action_group_id": self.actions.id}],
            tags={**self._tags, "model-name": model},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _query_alert(self, key: str, workspace_id: pulumi.Input[str], query: pulumi.Input[str],
                     measure: str, threshold: float, *, severity: int,
                     description: str) -> azure_native.monitor.ScheduledQueryRule:
        """A log alert on Log Analytics: the ``measure`` column above ``threshold`` over 15 minutes."""
        return azure_native.monitor.ScheduledQueryRule(
            f"{self._name}-{key}",
            resource_group_name=self._target.resource_group_name,
            location=self._target.location,
            kind="LogAlert",
            description=description,
            severity=severity,
            enabled=True,
            scopes=[workspace_id],
            evaluation_frequency="PT5M",
            window_size="PT15M",
            auto_mitigate=True,
            criteria={"all_of": [{
                "query": query,
                "time_aggregation": "Maximum",
                "metric_measure_column": measure,
                "operator": "GreaterThan",
                "threshold": threshold,
                "failing_periods": {"number_of_evaluation_periods": 1, "min_failing_periods_to_alert": 1},
            }]},
            actions={"action_groups": [self.actions.id]},
            tags={**self._tags, "model-name": key.rsplit("-", 1)[0]},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _grafana(self) -> azure_native.dashboard.Grafana:
        """Managed Grafana reading managed Prometheus; its identity may only read monitoring data."""
        target = self._target
        grafana = azure_native.dashboard.Grafana(
            f"{self._name}-grafana",
            resource_group_name=target.resource_group_name,
            location=target.location,
            sku={"name": "Standard"},
            # Managed Grafana supports only a system-assigned identity for data-source access.
            identity={"type": "SystemAssigned"},
            properties={
                "public_network_access": access(target.private),
                "api_key": "Disabled",
                "deterministic_outbound_ip": "Disabled",
                "zone_redundancy": "Enabled" if self._args.environment == "prod" else "Disabled",
                "grafana_integrations": {"azure_monitor_workspace_integrations": [
                    {"azure_monitor_workspace_resource_id": self.prometheus.id}] if self.prometheus else []},
            },
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if self.prometheus is not None:
            sub = client_config(self).subscription_id
            self.grafana_reader = grant(
                f"{self._name}-grafana-reader",
                principal_id=grafana.identity.apply(lambda i: i.principal_id if i else ""),
                role="Monitoring Data Reader", scope=self.prometheus.id, subscription_id=sub, parent=self)
        return grafana

    def _otel_config(self, monitored: MonitoredResources) -> pulumi.Output[dict[str, str]]:
        """OTel SDK settings: resource attributes always; the Azure Monitor connection string if known."""
        env = {
            "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={self._args.environment}",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
        if monitored.application_insights_connection_string is None:
            return pulumi.Output.from_input(env)
        return pulumi.Output.secret(monitored.application_insights_connection_string).apply(
            lambda cs: {**env, "APPLICATIONINSIGHTS_CONNECTION_STRING": cs})
