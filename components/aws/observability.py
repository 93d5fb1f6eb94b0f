"""Metrics, alerts, dashboards and trace collection for one AWS environment.

* Amazon Managed Prometheus workspace (KMS-encrypted, logging to a KMS-encrypted log group)
  with an SLO rule group generated from the serving app's metric contract
  (``shipway/serving/metrics.py``) and an alert manager routing to an encrypted SNS topic.
* Amazon Managed Grafana (optional) with a customer-managed role that may only query this
  workspace; the dashboard itself is an output (``dashboard_json``) to import or provision.
* The ADOT collector configuration as an SSM parameter: OTLP in, traces to X-Ray, metrics
  remote-written to the workspace with SigV4. The collector runs beside the workloads (ECS
  sidecar or EKS daemonset) and reads ``AOT_CONFIG_CONTENT`` from the parameter. It has no
  Prometheus receiver on purpose: a SageMaker model container is reachable only through
  ``InvokeEndpoint`` (``/invocations``, ``/ping``), so there is no ``/metrics`` address to scrape.
  The serving SLIs on AWS come from SageMaker's CloudWatch metrics (``Invocations``,
  ``Invocation5XXErrors``, ``ModelLatency``: the same ``/invocations`` requests), and the
  CloudWatch burn-rate alarms (``_slo_alarms``) are the ones that page; the AMP rule group's serving
  rules stay silent on a SageMaker stack (docs/slos.md, "AWS and Prometheus").

Rollback alarms live with each endpoint (``InferenceEndpoint``); this component owns the
environment-wide views and the notification topic those alarms publish to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws._base import account_facts, aws_tags, policy_json, prefix, scoped_role, statement
from components.common import ObservabilityArgs
from shipway_core.config import AwsSettings, SloSettings
from shipway_core.observability import cloudwatch
from shipway_core.observability.rules import generate_rules

_GRAFANA_QUERY_ACTIONS = ("aps:GetLabels", "aps:GetMetricMetadata", "aps:GetSeries", "aps:QueryMetrics")


def slo_rules(args: ObservabilityArgs) -> dict[str, Any]:
    """The shared Prometheus rule file (``shipway_core.observability.rules``) for AMP: the same
    recording rules and burn-rate alerts as every other target."""
    return generate_rules(args.slo(), sorted(args.endpoints), args.environment)


def _metric_query(
    query: Mapping[str, Any], endpoint_name: pulumi.Input[str]
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    stat = query["MetricStat"]
    dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} | {"EndpointName": endpoint_name}
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query["Id"],
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=stat["Metric"]["Namespace"],
            metric_name=stat["Metric"]["MetricName"],
            dimensions=dims,
            period=stat["Period"],
            stat=stat["Stat"],
        ),
    )


def alertmanager_definition(topic_arn: str, region: str) -> str:
    """AMP alert manager: everything to the environment's SNS topic, pages repeated hourly."""
    return (
        "alertmanager_config: |\n"
        "  route:\n"
        "    receiver: sns\n"
        "    group_by: [alertname, model]\n"
        "    repeat_interval: 1h\n"
        "  receivers:\n"
        "    - name: sns\n"
        "      sns_configs:\n"
        f"        - topic_arn: {topic_arn}\n"
        "          sigv4:\n"
        f"            region: {region}\n"
    )


def otel_collector_config(region: str, remote_write_url: str, environment: str) -> str:
    """ADOT collector config (JSON is valid YAML, and json.dumps cannot mis-indent)."""
    return json.dumps(
        {
            "extensions": {"health_check": {}, "sigv4auth": {"region": region, "service": "aps"}},
            # The collector runs as its own task in the private subnets (SageMaker containers cannot
            # reach a sidecar); its security group, not the bind address, decides who may send.
            "receivers": {
                "otlp": {
                    "protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}
                }
            },
            "processors": {
                "memory_limiter": {
                    "check_interval": "1s",
                    "limit_percentage": 80,
                    "spike_limit_percentage": 20,
                },
                "batch": {"timeout": "5s"},
                "resource": {
                    "attributes": [
                        {"key": "deployment.environment", "value": environment, "action": "upsert"}
                    ]
                },
            },
            "exporters": {
                "awsxray": {"region": region, "indexed_attributes": ["model", "version"]},
                "prometheusremotewrite": {
                    "endpoint": remote_write_url,
                    "auth": {"authenticator": "sigv4auth"},
                },
            },
            "service": {
                "extensions": ["health_check", "sigv4auth"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "resource", "batch"],
                        "exporters": ["awsxray"],
                    },
                    "metrics": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "resource", "batch"],
                        "exporters": ["prometheusremotewrite"],
                    },
                },
            },
        },
        indent=2,
        sort_keys=True,
    )


def dashboard(environment: str, endpoints: Mapping[str, Any]) -> dict[str, Any]:
    """Grafana dashboard: traffic, errors, p99 and drift per served model."""
    panels = []
    queries = (
        ("Requests/s", 'sum by (version) (rate(shipway_requests_total{model="%s"}[5m]))'),
        ("5xx ratio", 'shipway:error_ratio:rate5m{model="%s"}'),
        ("p99 latency (s)", 'shipway:latency_p99_seconds:5m{model="%s"}'),
        ("Max feature PSI", 'max by (version) (shipway_feature_psi{model="%s"})'),
    )
    for row, model in enumerate(sorted(endpoints)):
        for col, (title, expr) in enumerate(queries):
            panels.append(
                {
                    "type": "timeseries",
                    "title": f"{model}: {title}",
                    "gridPos": {"x": col * 6, "y": row * 8, "w": 6, "h": 8},
                    "targets": [{"refId": "A", "expr": expr % model}],
                }
            )
    return {
        "title": f"Shipway {environment}",
        "uid": f"shipway-{environment}",
        "schemaVersion": 39,
        "tags": ["shipway", environment],
        "panels": panels,
    }


# A year unless the stack says otherwise (aws.logRetentionDays).
DEFAULT_LOG_RETENTION_DAYS = 365


class Observability(pulumi.ComponentResource):
    """AMP workspace + SLO rules + alert routing, optional Managed Grafana, ADOT config."""

    prometheus_endpoint: pulumi.Output[str]
    """AMP workspace query/remote-write base URL."""
    alert_topic_arn: pulumi.Output[str]
    """SNS topic every alarm and Prometheus alert notifies."""
    grafana_url: pulumi.Output[str | None]
    """Managed Grafana URL, or None when ``aws.managedGrafana`` is false."""
    dashboard_json: pulumi.Output[str]
    """Grafana dashboard model (import it, or provision it with the Grafana provider)."""
    otel_config_parameter: pulumi.Output[str]
    """SSM parameter holding the ADOT collector configuration."""
    alert_rules: pulumi.Output[str]
    """The SLO rule groups loaded into AMP (YAML/JSON)."""

    def __init__(
        self,
        name: str,
        args: ObservabilityArgs,
        settings: AwsSettings,
        *,
        kms_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("shipway:aws:Observability", name, None, opts)
        tags = aws_tags(args.tags)
        facts = account_facts(self)
        child = pulumi.ResourceOptions(parent=self)
        env = args.environment
        topic = aws.sns.Topic(
            f"{name}-alerts",
            name=f"{prefix(env)}-alerts",
            kms_master_key_id=kms_key_arn,
            tags=tags,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-alerts-policy",
            arn=topic.arn,
            policy=policy_json(
                [
                    {
                        "Sid": "AlarmsAndPrometheusPublish",
                        "Effect": "Allow",
                        "Principal": {"Service": ["aps.amazonaws.com", "cloudwatch.amazonaws.com"]},
                        # AMP's alert manager checks the topic before publishing.
                        "Action": ["sns:GetTopicAttributes", "sns:Publish"],
                        "Resource": topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": facts.account_id}},
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": ["sns:Publish"],
                        "Resource": topic.arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ]
            ),
            opts=child,
        )
        logs = {
            part: aws.cloudwatch.LogGroup(
                f"{name}-{part}-logs",
                name=f"/shipway/{env}/{part}",
                kms_key_id=kms_key_arn,
                retention_in_days=args.log_retention_days or DEFAULT_LOG_RETENTION_DAYS,
                tags=tags,
                opts=child,
            )
            for part in ("prometheus", "otel-collector")
        }
        workspace = aws.amp.Workspace(
            f"{name}-prometheus",
            alias=f"{prefix(env)}-metrics",
            kms_key_arn=kms_key_arn,
            logging_configuration=aws.amp.WorkspaceLoggingConfigurationArgs(
                log_group_arn=pulumi.Output.concat(logs["prometheus"].arn, ":*")
            ),
            tags=tags,
            opts=child,
        )
        rules = json.dumps(slo_rules(args), indent=2)
        aws.amp.RuleGroupNamespace(
            f"{name}-rules",
            name=f"{prefix(env)}-slo",
            workspace_id=workspace.id,
            data=rules,
            tags=tags,
            opts=child,
        )
        aws.amp.AlertManagerDefinition(
            f"{name}-alertmanager",
            workspace_id=workspace.id,
            definition=pulumi.Output.all(topic.arn, facts.region).apply(
                lambda v: alertmanager_definition(*v)
            ),
            opts=child,
        )
        for model, endpoint_name in sorted(args.endpoints.items()):
            self._slo_alarms(name, f"{prefix(env)}-{model}", endpoint_name, args.slo(), topic.arn, tags)
        self.grafana_url = (
            self._grafana(name, env, settings, tags, facts, workspace)
            if settings.managed_grafana
            else pulumi.Output.from_input(None)
        )
        remote_write = pulumi.Output.concat(workspace.prometheus_endpoint, "api/v1/remote_write")
        parameter = aws.ssm.Parameter(
            f"{name}-otel-config",
            name=f"/shipway/{env}/otel-collector/config",
            type="String",
            tier="Advanced",
            description="ADOT collector configuration (no secrets: it authenticates with its task role)",
            value=pulumi.Output.all(facts.region, remote_write).apply(
                lambda v: otel_collector_config(v[0], v[1], env)
            ),
            tags=tags,
            opts=child,
        )
        self.prometheus_endpoint = workspace.prometheus_endpoint
        self.alert_topic_arn = topic.arn
        self.dashboard_json = pulumi.Output.from_input(
            json.dumps(dashboard(env, args.endpoints), sort_keys=True)
        )
        self.otel_config_parameter = parameter.name
        self.alert_rules = pulumi.Output.from_input(rules)
        self.register_outputs(
            {
                "prometheus_endpoint": self.prometheus_endpoint,
                "alert_topic_arn": self.alert_topic_arn,
                "grafana_url": self.grafana_url,
                "dashboard_json": self.dashboard_json,
                "otel_config_parameter": self.otel_config_parameter,
                "alert_rules": self.alert_rules,
            }
        )

    def _slo_alarms(self, name: str, alarm_prefix: str, endpoint_name: pulumi.Input[str], slo: SloSettings,
                    topic_arn: pulumi.Input[str], tags: Mapping[str, str]) -> None:
        """The SLOs as CloudWatch alarms on the endpoint's SageMaker metrics (``cloudwatch.py``):
        silent window alarms, and one notifying composite per SLO and severity."""
        windows, composites = cloudwatch.alarms(slo, alarm_prefix)
        parts = []
        for w in windows:
            parts.append(aws.cloudwatch.MetricAlarm(
                f"{name}-{w.name}",
                name=w.name,
                alarm_description=f"{w.slo} SLO: bad ratio over {w.window} above {w.burn_rate:g}x the budget",
                comparison_operator=w.comparison,
                threshold=w.threshold,
                evaluation_periods=1,
                treat_missing_data="notBreaching",  # no traffic: no datapoint, as NaN in PromQL
                metric_queries=[
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(id="ratio", expression=w.expression, return_data=True),
                    *(_metric_query(q, endpoint_name) for q in w.metrics),
                ],
                actions_enabled=False,  # only the composites notify: one alert per SLO and severity
                tags=dict(tags),
                opts=pulumi.ResourceOptions(parent=self),
            ))
        for c in composites:
            aws.cloudwatch.CompositeAlarm(
                f"{name}-{c.name}",
                alarm_name=c.name,
                alarm_description=f"{c.slo} SLO error budget burning ({c.severity}); runbook "
                f"docs/runbooks/Shipway{c.slo.capitalize()}BudgetBurn.md",
                alarm_rule=c.rule,
                alarm_actions=[topic_arn],
                ok_actions=[topic_arn],
                tags={**tags, "severity": c.severity, "slo": c.slo},
                opts=pulumi.ResourceOptions(parent=self, depends_on=parts),
            )

    def _grafana(
        self,
        name: str,
        env: str,
        settings: AwsSettings,
        tags: dict[str, str],
        facts: Any,
        workspace: aws.amp.Workspace,
    ) -> pulumi.Output[str]:
        """Customer-managed role: Grafana may query this workspace and nothing else."""
        role = scoped_role(
            f"{name}-grafana-role",
            service="grafana.amazonaws.com",
            description="Managed Grafana: query the environment's Prometheus workspace",
            statements=[statement("QueryOwnWorkspace", _GRAFANA_QUERY_ACTIONS, [workspace.arn])],
            tags=tags,
            facts=facts,
            parent=self,
        )
        grafana = aws.grafana.Workspace(
            f"{name}-grafana",
            name=f"{prefix(env)}-grafana",
            account_access_type="CURRENT_ACCOUNT",
            authentication_providers=["AWS_SSO"],
            permission_type="CUSTOMER_MANAGED",
            role_arn=role.arn,
            data_sources=["PROMETHEUS"],
            description=f"Shipway {env} dashboards",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.concat("https://", grafana.endpoint)
