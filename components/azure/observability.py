"""Diagnostics, SLO alerts, managed Prometheus/Grafana and OTel export config on Azure Monitor."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, access, client_config, grant
from components.common import ObservabilityArgs, validate_tags
from shipway_core.config import SloSettings
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.azure import SEVERITY, azure_rules, burn_log_alerts
from shipway_core.observability.rules import generate_rules


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


def drift_query(endpoint_name: str, statistic: str) -> str:
    """KQL: the worst feature's ``statistic`` effect size in the serving app's ``drift_effects``
    log lines (shipway_core.observability.drift), counting only lines whose live window held at
    least drift.MIN_SAMPLES rows; the ``effect`` column is what the alert compares."""
    field = drift_decision.LOG_EFFECT_FIELDS[statistic]
    return (
        "AmlOnlineEndpointConsoleLog\n"
        f"| where EndpointName == '{endpoint_name}'\n"
        "| extend line = parse_json(Message)\n"
        f"| where tostring(line.event) == '{drift_decision.LOG_EVENT}'\n"
        f"| where todouble(line.{drift_decision.LOG_SAMPLES_FIELD}) >= {drift_decision.MIN_SAMPLES}\n"
        f"| summarize effect = max(todouble(line.{field}))"
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


def _burn_query_of(slo: SloSettings, model: str, index: int, endpoint_name: str) -> str:
    """The KQL of the ``index``-th burn-rate log alert of ``model`` once the endpoint's name is known."""
    return burn_log_alerts(slo, model, endpoint_name)[index].query


class Observability(pulumi.ComponentResource):
    """Azure Monitor wiring for one environment.

    Diagnostic settings send every watched resource's logs and metrics to Log Analytics. The SLOs
    (``shipway_core.observability.slo``) alert by burn rate, one alert per SLO and severity: as
    managed-Prometheus rules when the stack turns managed Prometheus on, otherwise as log search
    alerts in KQL over each endpoint's traffic log (same windows, factors, thresholds and
    low-traffic guard). Log alerts per endpoint watch drift (one per effect-size statistic). All
    notify one action group.
    Managed Grafana is created only when the stack turns it on.
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
        for model in sorted(monitored.endpoint_ids):
            endpoint_name = monitored.endpoint_names.get(model, model)
            if not settings.managed_prometheus:
                self.alerts += self._burn_alerts(model, endpoint_name, monitored.log_analytics_workspace_id)
            # One log alert per drift statistic: the decision of ShipwayFeatureDrift (effect size
            # above the stack's threshold, enough live samples) on the app's drift_effects lines.
            for statistic, threshold in drift_decision.effect_thresholds(args.slo()).items():
                self.alerts.append(self._query_alert(
                    f"{model}-drift-{statistic.replace('_', '-')}", model, monitored.log_analytics_workspace_id,
                    pulumi.Output.from_input(endpoint_name).apply(
                        functools.partial(drift_query, statistic=statistic)),
                    "effect", threshold, severity=3,
                    description=(f"{model}: feature drift, {drift_decision.MEANING[statistic]} above "
                                 f"{threshold:g} with at least {drift_decision.MIN_SAMPLES} live samples")))

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

    def _burn_alerts(self, model: str, endpoint_name: pulumi.Input[str],
                     workspace_id: pulumi.Input[str]) -> list[azure_native.monitor.ScheduledQueryRule]:
        """One log search alert per SLO and severity (``burn_log_alerts``) over the endpoint's traffic log."""
        slo = self._args.slo()
        shapes = burn_log_alerts(slo, model, "endpoint")  # names, windows, severities: no endpoint in them
        name = pulumi.Output.from_input(endpoint_name)
        rules = []
        for i, shape in enumerate(shapes):
            query = name.apply(functools.partial(_burn_query_of, slo, model, i))
            tiers = "; or ".join(f"{b:g}x over {long} and {short}" for b, long, short in shape.tiers)
            rules.append(azure_native.monitor.ScheduledQueryRule(
                f"{self._name}-{shape.name}",
                resource_group_name=self._target.resource_group_name,
                location=self._target.location,
                kind="LogAlert",
                description=(f"{model}: {shape.slo} error budget burning too fast ({shape.severity}): {tiers}, "
                             f"at least {slo.min_requests} requests in the long window"),
                severity=SEVERITY[shape.severity],
                enabled=True,
                scopes=[workspace_id],
                evaluation_frequency=shape.evaluation_frequency,
                window_size=shape.evaluation_frequency,
                # The query picks its own windows (ago(5m) .. ago(2d)); the rule must let it read that far.
                override_query_time_range=shape.lookback,
                auto_mitigate=True,
                criteria={"all_of": [{
                    "query": query,
                    "time_aggregation": "Maximum",
                    "metric_measure_column": shape.measure,
                    "operator": "GreaterThan",
                    "threshold": 0,
                    "failing_periods": {"number_of_evaluation_periods": 1, "min_failing_periods_to_alert": 1},
                }]},
                actions={"action_groups": [self.actions.id]},
                tags={**self._tags, "model-name": model},
                opts=pulumi.ResourceOptions(parent=self),
            ))
        return rules

    def _query_alert(self, key: str, model: str, workspace_id: pulumi.Input[str], query: pulumi.Input[str],
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
            tags={**self._tags, "model-name": model},
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
