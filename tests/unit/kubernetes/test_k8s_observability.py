"""Observability: ServiceMonitors, SLO rules, Grafana dashboards, the OTel Collector and its RBAC."""

from __future__ import annotations

import json

import pytest
from k8s_support import plain, pod_spec

from components.common import ObservabilityArgs
from components.kubernetes.observability import Observability, collector_config, export_port
from shipway_core.config import KubernetesSettings, SloSettings
from shipway_core.observability.dashboards import all_dashboards
from shipway_core.observability.rules import ALERT_NAMES, RuleOptions, generate_rules
from tests.support.recording import Recording, record, resolve

TAGS = {
    "owner": "ml-platform",
    "cost-center": "cc-1234",
    "environment": "prod",
    "data-classification": "confidential",
    "managed-by": "shipway",
}
COLLECTOR = "observability-otel-collector"


def build(settings: KubernetesSettings | None = None) -> Recording:
    args = ObservabilityArgs(
        "prod",
        TAGS,
        endpoints={"churn": "http://serve-churn"},
        availability=0.999,
        latency_p99_ms=200.0,
        drift_psi=0.25,
        drift_wasserstein=0.15,
    )
    return record(lambda: Observability("observability", args, settings or KubernetesSettings()), stack="prod")


@pytest.fixture(scope="module")
def rec() -> Recording:
    return build(KubernetesSettings(otlp_export_endpoint="https://otlp.example.com:4318"))


def test_children_exact_types_and_names(rec: Recording) -> None:
    assert rec.one("shipway:kubernetes:Observability").name == "observability"
    assert sorted((r.type, r.name) for r in rec.resources if r.type.startswith("kubernetes:")) == [
        ("kubernetes:apps/v1:Deployment", f"{COLLECTOR}-deployment"),
        ("kubernetes:core/v1:ConfigMap", "observability-dashboards"),
        ("kubernetes:core/v1:ConfigMap", f"{COLLECTOR}-config"),
        ("kubernetes:core/v1:Service", f"{COLLECTOR}-service"),
        ("kubernetes:core/v1:ServiceAccount", f"{COLLECTOR}-account"),
        ("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "observability-rules"),
        ("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "observability-inference-endpoint-monitor"),
        ("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "observability-otel-collector-monitor"),
        ("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "observability-tracking-server-monitor"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{COLLECTOR}-network"),
        ("kubernetes:rbac.authorization.k8s.io/v1:Role", f"{COLLECTOR}-role"),
        ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", f"{COLLECTOR}-binding"),
    ]


def test_outputs(rec: Recording) -> None:
    obs = rec.result
    assert resolve(obs.otlp_endpoint) == f"http://{COLLECTOR}.shipway-prod.svc.cluster.local:4318"
    assert resolve(obs.alert_rule_names) == [*ALERT_NAMES, "ShipwayPipelineComponentDown", "ShipwayTelemetryDropped",
                                             "ShipwayRegistryErrors"]
    assert resolve(obs.dashboard_names) == ["shipway-prod-churn.json", "shipway-prod-platform.json"]


def test_service_monitor_scrapes_endpoints_as_the_shared_job(rec: Recording) -> None:
    sm = rec.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "observability-inference-endpoint-monitor")
    assert sm.inputs["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm.inputs["kind"] == "ServiceMonitor"
    assert sm.inputs["spec"] == {
        "jobLabel": "shipway.dev/scrape-job",
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/part-of": "shipway",
                "app.kubernetes.io/component": "inference-endpoint",
            }
        },
        "namespaceSelector": {"matchNames": ["shipway-prod"]},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scheme": "http"}],
    }


def test_prometheus_rule_is_the_shared_rule_file_for_this_slo(rec: Recording) -> None:
    rule = plain(rec.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule").inputs)
    assert rule["metadata"]["name"] == "observability-slo"
    slo = SloSettings(availability=0.999, latency_p99_ms=200.0, drift_psi=0.25, drift_wasserstein=0.15)
    assert rule["spec"] == generate_rules(slo, ["churn"], "prod", RuleOptions(pipeline_jobs=("otelcol", "mlflow")))
    alerts = {(r["alert"], r["labels"].get("severity")): r for g in rule["spec"]["groups"] for r in g["rules"]
              if "alert" in r}
    records = {r["record"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    # The stack's SLO numbers, not defaults, reach the expressions.
    assert 'le="0.2"' in records["model:shipway_request_slow:ratio_rate1h"]["expr"]
    assert "> 0.0144" in alerts[("ShipwayAvailabilityBudgetBurn", "page")]["expr"]  # 14.4 x (1 - 0.999)
    assert 'statistic="wasserstein"}) > 0.15' in alerts[("ShipwayFeatureDrift", "ticket")]["expr"]
    assert 'job="shipway-endpoints"' in alerts[("ShipwayFeatureDrift", "ticket")]["expr"]


def test_pipeline_health_rules_cover_the_collector_and_mlflow_jobs_their_services_name(rec: Recording) -> None:
    """The namespace's own pipeline processes page when down, and the jobs the rules select are the
    ones the ServiceMonitors produce (``jobLabel`` from each Service's scrape-job label)."""
    rule = plain(rec.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule").inputs)
    pipeline = {r["alert"]: r for g in rule["spec"]["groups"] if g["name"].endswith("-pipeline")
                for r in g["rules"]}
    assert set(pipeline) == {"ShipwayPipelineComponentDown", "ShipwayTelemetryDropped", "ShipwayRegistryErrors"}
    assert pipeline["ShipwayPipelineComponentDown"]["expr"] == 'up{job=~"mlflow|otelcol"} == 0'
    assert pipeline["ShipwayPipelineComponentDown"]["labels"]["severity"] == "page"
    service = plain(rec.one("kubernetes:core/v1:Service", "observability-otel-collector-service").inputs)
    assert service["metadata"]["labels"]["shipway.dev/scrape-job"] == "otelcol"
    monitor = plain(rec.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
                            "observability-otel-collector-monitor").inputs)
    assert monitor["spec"]["jobLabel"] == "shipway.dev/scrape-job"


def test_dashboards_configmap_has_sidecar_label(rec: Recording) -> None:
    cm = plain(rec.one("kubernetes:core/v1:ConfigMap", "observability-dashboards").inputs)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(cm["data"]) == ["shipway-prod-churn.json", "shipway-prod-platform.json"]
    slo = SloSettings(availability=0.999, latency_p99_ms=200.0, drift_psi=0.25, drift_wasserstein=0.15)
    shared = all_dashboards(["churn"], "prod", slo)
    assert {k: json.loads(v) for k, v in cm["data"].items()} == shared
    churn = json.loads(cm["data"]["shipway-prod-churn.json"])
    exprs = [t["expr"] for p in churn["panels"] for t in p.get("targets", [])]
    assert exprs and all('model="churn"' in e for e in exprs)
    assert 'model:shipway_request_errors:ratio_rate1h{model="churn"} / 0.001' in exprs  # this stack's budget
    assert any('statistic="wasserstein"}) / 0.15' in e for e in exprs)  # this stack's drift threshold


def test_collector_rbac_is_read_only_on_pods_and_replicasets(rec: Recording) -> None:
    role = plain(rec.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs)
    assert role["metadata"]["namespace"] == "shipway-prod"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
    ]
    binding = plain(rec.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding").inputs)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": COLLECTOR}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": COLLECTOR, "namespace": "shipway-prod"}]
    account = plain(rec.one("kubernetes:core/v1:ServiceAccount").inputs)
    assert account["automountServiceAccountToken"] is True  # needed: k8sattributes calls the API


def test_collector_deployment_is_restricted(rec: Recording) -> None:
    spec = pod_spec(rec.one("kubernetes:apps/v1:Deployment"))
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "health"}
    assert spec["serviceAccountName"] == COLLECTOR
    assert spec["volumes"] == [{"name": "config", "configMap": {"name": f"{COLLECTOR}-config", "defaultMode": 0o444}}]
    annotations = plain(rec.one("kubernetes:apps/v1:Deployment").inputs)["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["shipway.dev/config-sha"]) == 16


def test_collector_pipelines_export_everything(rec: Recording) -> None:
    cm = plain(rec.one("kubernetes:core/v1:ConfigMap", f"{COLLECTOR}-config").inputs)
    config = json.loads(cm["data"]["config.yaml"])
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlphttp"]
    assert pipelines["logs"]["exporters"] == ["otlphttp"]
    assert pipelines["metrics"]["exporters"] == ["otlphttp", "prometheus"]
    exporter = config["exporters"]["otlphttp"]
    assert exporter["endpoint"] == "https://otlp.example.com:4318"
    # The same bounded, retrying queue as the local hub (shipway_core.observability.collector).
    assert exporter["sending_queue"] == {"enabled": True, "queue_size": 5000}
    assert exporter["retry_on_failure"]["enabled"] is True
    assert config["processors"]["k8sattributes"]["filter"] == {"namespace": "shipway-prod"}


def test_collector_network_policy(rec: Recording) -> None:
    spec = plain(rec.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"])
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "otel-collector"
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "shipway"}}}],
            "ports": [{"port": 4317, "protocol": "TCP"}, {"port": 4318, "protocol": "TCP"}],
        },
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": 8889, "protocol": "TCP"}],
        },
    ]
    assert [e["ports"] for e in spec["egress"]] == [
        [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        [{"port": 4318, "protocol": "TCP"}],
    ]


def test_collector_without_backend_only_debugs() -> None:
    config = json.loads(collector_config("ns", None))
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["debug"]
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]
    assert "otlphttp" not in config["exporters"]


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [(None, None), ("https://x.io", 443), ("http://x.io", 80), ("http://x.io:4318/v1", 4318)],
)
def test_export_port(endpoint: str | None, port: int | None) -> None:
    assert export_port(endpoint) == port


def test_bad_slo_rejected_by_the_shared_generator_before_anything_exists() -> None:
    args = ObservabilityArgs("prod", TAGS, endpoints={"churn": "x"}, availability=1.0)
    with pytest.raises(ValueError) as err:
        Observability("observability", args, KubernetesSettings())
    assert str(err.value) == "slo.availability: 1.0 is not valid; use a fraction between 0 and 1"


def test_bad_endpoint_model_name_rejected() -> None:
    args = ObservabilityArgs("prod", TAGS, endpoints={"Bad_Name": "x"})
    with pytest.raises(ValueError, match=r"^model_name: 'Bad_Name' is not valid"):
        Observability("observability", args, KubernetesSettings())
