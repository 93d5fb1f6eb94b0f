"""Observability: scrape config, SLO alert rules, dashboards and an OpenTelemetry Collector.

It plugs into what a cluster usually already runs (the Prometheus Operator reads ServiceMonitor
and PrometheusRule objects, Grafana's sidecar loads ConfigMaps labelled ``grafana_dashboard``),
and adds one thing most clusters lack: a namespaced OTel Collector that the endpoints send traces,
logs and metrics to, so backends change in one ConfigMap instead of in every workload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from components.common import ObservabilityArgs, reject_unsupported, validate_model_pin, validate_tags
from components.kubernetes import network
from components.kubernetes.podspec import (
    COLLECTOR_COMPONENT,
    ENDPOINT_COMPONENT,
    MAX_OBSERVABILITY_NAME,
    PART_OF,
    PART_OF_LABEL,
    SCRAPE_JOB_LABEL,
    TRACKING_COMPONENT,
    container_security_context,
    http_probe,
    metadata,
    namespace_name,
    pod_security_context,
    resources,
    selector_labels,
    topology_spread,
    validate_object_name,
)
from shipway_core.config import KubernetesSettings
from shipway_core.observability.dashboards import all_dashboards
from shipway_core.observability.rules import JOB, alert_names, generate_rules

MONITORING_API = "monitoring.coreos.com/v1"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
COLLECTOR_METRICS_PORT = 8889
HEALTH_PORT = 13133
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"
ENDPOINT_JOB = JOB  # "shipway-endpoints": what the shared rules and dashboards select on

# k8sattributes enriches telemetry with pod/deployment names: it must read pods and replicasets.
COLLECTOR_RBAC_RULES: tuple[dict[str, Any], ...] = (
    {"api_groups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"api_groups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
)


def collector_config(namespace: str, export_endpoint: str | None) -> str:
    """Collector pipelines: OTLP in; traces/logs/metrics out to the backend (or debug if none).

    JSON is valid YAML, and ``json.dumps`` cannot produce an indentation bug.
    """
    exporters: dict[str, Any] = {
        "debug": {"verbosity": "basic"},
        "prometheus": {"endpoint": f"0.0.0.0:{COLLECTOR_METRICS_PORT}"},
    }
    out = ["debug"]
    if export_endpoint:
        exporters["otlphttp"] = {"endpoint": export_endpoint}
        out = ["otlphttp"]
    processors = ["memory_limiter", "k8sattributes", "batch"]
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "k8sattributes": {
                "auth_type": "serviceAccount",
                "filter": {"namespace": namespace},
                "extract": {"metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name"]},
            },
            "batch": {},
        },
        "exporters": exporters,
        "extensions": {"health_check": {"endpoint": f"0.0.0.0:{HEALTH_PORT}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": processors, "exporters": out},
                "logs": {"receivers": ["otlp"], "processors": processors, "exporters": out},
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": processors,
                    "exporters": sorted({"prometheus", *out} - {"debug"}),
                },
            },
        },
    }
    return json.dumps(config, indent=2, sort_keys=True)


def export_port(endpoint: str | None) -> int | None:
    """TCP port the collector must be allowed to reach for ``endpoint``."""
    if not endpoint:
        return None
    url = urlparse(endpoint)
    return url.port or (443 if url.scheme == "https" else 80)


def service_monitor_spec(component: str, port: str, namespace: pulumi.Input[str]) -> dict[str, Any]:
    """Scrape every Shipway Service of ``component`` in the environment namespace.

    ``jobLabel`` takes the Prometheus ``job`` from the Service's ``shipway.dev/scrape-job`` label,
    so endpoints are scraped as job ``shipway-endpoints`` exactly as on every other target, and the
    shared rules and dashboards (which select on that job) work unchanged.
    """
    return {
        "jobLabel": SCRAPE_JOB_LABEL,
        "selector": {"matchLabels": {PART_OF_LABEL: PART_OF, "app.kubernetes.io/component": component}},
        "namespaceSelector": {"matchNames": [namespace]},
        "endpoints": [{"port": port, "path": "/metrics", "interval": "30s", "scheme": "http"}],
    }


def prometheus_rule_spec(args: ObservabilityArgs) -> dict[str, Any]:
    """Recording + alerting rules from ``shipway_core.observability.rules``: the same on every target."""
    return generate_rules(args.slo(), sorted(args.endpoints), args.environment)


def dashboard_files(args: ObservabilityArgs) -> dict[str, str]:
    """ConfigMap data for Grafana's sidecar: the shared platform + per-endpoint dashboards."""
    boards = all_dashboards(sorted(args.endpoints), args.environment, args.slo())
    return {file: json.dumps(board, sort_keys=True) for file, board in sorted(boards.items())}


class Observability(pulumi.ComponentResource):
    """ServiceMonitors, PrometheusRule, Grafana dashboards and the OTel Collector of one environment."""

    otlp_endpoint: pulumi.Output[str]
    """OTLP/HTTP URL workloads send traces, logs and metrics to (the in-namespace collector)."""
    alert_rule_names: pulumi.Output[list[str]]
    """Names of the alert rules shipped in the PrometheusRule."""
    dashboard_names: pulumi.Output[list[str]]
    """Dashboard file names the Grafana sidecar loads."""

    def __init__(
        self,
        name: str,
        args: ObservabilityArgs,
        settings: KubernetesSettings,
        *,
        namespace: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        validate_tags(args.tags)
        reject_unsupported("kubernetes", "log_retention_days", args.log_retention_days,
                           "container logs are kept by the cluster's log pipeline; leave it unset")
        validate_object_name(name, MAX_OBSERVABILITY_NAME)
        for model in args.endpoints:
            validate_model_pin(model, 1)
        rules = prometheus_rule_spec(args)  # validates the SLO before anything is created
        dashboard_data = dashboard_files(args)
        super().__init__("shipway:kubernetes:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns: pulumi.Input[str] = namespace if namespace is not None else namespace_name(args.environment, settings)
        tags = args.tags

        self.service_monitors = {
            component: k8s.apiextensions.CustomResource(
                f"{name}-{component}-monitor",
                api_version=MONITORING_API,
                kind="ServiceMonitor",
                metadata=metadata(f"{name}-{component}", ns, "observability", tags),
                spec=service_monitor_spec(component, port, ns),
                opts=child,
            )
            for component, port in (
                (ENDPOINT_COMPONENT, "http"),
                (TRACKING_COMPONENT, "http"),
                (COLLECTOR_COMPONENT, "metrics"),
            )
        }
        """Native ServiceMonitor per scraped component: the escape hatch."""
        self.prometheus_rule = k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version=MONITORING_API,
            kind="PrometheusRule",
            metadata=metadata(f"{name}-slo", ns, "observability", tags),
            spec=rules,
            opts=child,
        )
        dash_meta = metadata(f"{name}-dashboards", ns, "observability", tags)
        dash_meta["labels"][GRAFANA_DASHBOARD_LABEL] = "1"
        self.dashboards = k8s.core.v1.ConfigMap(
            f"{name}-dashboards", metadata=dash_meta, data=dashboard_data, opts=child
        )
        self._collector(name, ns, settings, tags, child)

        self.otlp_endpoint = pulumi.Output.concat(
            "http://",
            self.collector_service.metadata.apply(lambda m: m.name),
            ".",
            pulumi.Output.from_input(ns),
            f".svc.cluster.local:{OTLP_HTTP_PORT}",
        )
        self.alert_rule_names = pulumi.Output.from_input(alert_names(rules))
        self.dashboard_names = pulumi.Output.from_input(sorted(dashboard_data))
        self.register_outputs(
            {
                "otlp_endpoint": self.otlp_endpoint,
                "alert_rule_names": self.alert_rule_names,
                "dashboard_names": self.dashboard_names,
            }
        )

    def _collector(
        self,
        name: str,
        ns: pulumi.Input[str],
        settings: KubernetesSettings,
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
    ) -> None:
        """ServiceAccount + least-privilege Role, config, Deployment, Service and its network allows."""
        cname = f"{name}-otel-collector"
        labels = selector_labels(cname, COLLECTOR_COMPONENT)

        def meta(obj: str, annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
            return metadata(obj, ns, COLLECTOR_COMPONENT, tags, annotations)

        # The only Shipway pod that talks to the API server (k8sattributes), so the only token.
        self.collector_account = k8s.core.v1.ServiceAccount(
            f"{cname}-account", metadata=meta(cname), automount_service_account_token=True, opts=child
        )
        self.collector_role = k8s.rbac.v1.Role(
            f"{cname}-role", metadata=meta(cname), rules=[dict(r) for r in COLLECTOR_RBAC_RULES], opts=child
        )
        self.collector_role_binding = k8s.rbac.v1.RoleBinding(
            f"{cname}-binding",
            metadata=meta(cname),
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": cname},
            subjects=[{"kind": "ServiceAccount", "name": cname, "namespace": ns}],
            opts=child,
        )
        config = pulumi.Output.from_input(ns).apply(lambda n: collector_config(n, settings.otlp_export_endpoint))
        self.collector_config = k8s.core.v1.ConfigMap(
            f"{cname}-config", metadata=meta(f"{cname}-config"), data={"config.yaml": config}, opts=child
        )
        container = {
            "name": "otel-collector",
            "image": settings.otel_collector_image,
            "args": ["--config=/conf/config.yaml"],
            "ports": [
                {"name": "otlp-grpc", "container_port": OTLP_GRPC_PORT},
                {"name": "otlp-http", "container_port": OTLP_HTTP_PORT},
                {"name": "metrics", "container_port": COLLECTOR_METRICS_PORT},
                {"name": "health", "container_port": HEALTH_PORT},
            ],
            "readiness_probe": http_probe("/", "health"),
            "liveness_probe": http_probe("/", "health", period=20),
            "resources": resources("100m", "256Mi", "1", "512Mi"),
            "security_context": container_security_context(),
            "volume_mounts": [{"name": "config", "mount_path": "/conf", "read_only": True}],
        }
        self.collector_deployment = k8s.apps.v1.Deployment(
            f"{cname}-deployment",
            metadata=meta(cname),
            spec={
                "replicas": 2,
                "selector": {"match_labels": labels},
                "strategy": {
                    "type": "RollingUpdate",
                    "rolling_update": {"max_unavailable": 0, "max_surge": 1},
                },
                "template": {
                    # The config hash in an annotation rolls the pods when the pipeline changes.
                    "metadata": {
                        "labels": labels,
                        "annotations": {"shipway.dev/config-sha": config.apply(_short_hash)},
                    },
                    "spec": {
                        "service_account_name": cname,
                        "automount_service_account_token": True,
                        "security_context": pod_security_context(),
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "config",
                                "config_map": {"name": f"{cname}-config", "default_mode": 0o444},
                            }
                        ],
                        "topology_spread_constraints": topology_spread(labels),
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.collector_config]),
        )
        self.collector_service = k8s.core.v1.Service(
            f"{cname}-service",
            metadata=meta(cname),
            spec={
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": "otlp-grpc", "port": OTLP_GRPC_PORT, "target_port": "otlp-grpc"},
                    {"name": "otlp-http", "port": OTLP_HTTP_PORT, "target_port": "otlp-http"},
                    {"name": "metrics", "port": COLLECTOR_METRICS_PORT, "target_port": "metrics"},
                ],
            },
            opts=child,
        )
        # The API server (k8sattributes) and an https backend: their addresses are not known here.
        egress = [network.rule([{"ip_block": {"cidr": "0.0.0.0/0"}}], network.ports(443, 6443), "egress")]
        port = export_port(settings.otlp_export_endpoint)
        if port is not None and port not in (443, 6443):
            egress.append(network.rule([network.anywhere_outside_cluster()], network.ports(port), "egress"))
        self.collector_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{cname}-network",
            metadata=meta(cname),
            spec=network.policy_spec(
                labels,
                ingress=[
                    network.rule(
                        [{"pod_selector": {"match_labels": {PART_OF_LABEL: PART_OF}}}],
                        network.ports(OTLP_GRPC_PORT, OTLP_HTTP_PORT),
                        "ingress",
                    ),
                    network.rule(
                        [network.namespace(settings.monitoring_namespace)],
                        network.ports(COLLECTOR_METRICS_PORT),
                        "ingress",
                    ),
                ],
                egress=egress,
            ),
            opts=child,
        )


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
