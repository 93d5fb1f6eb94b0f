"""The `local` target's component tree, recorded with mocks: types, names, security inputs."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.common import InferenceEndpointArgs
from components.local.components import InferenceEndpoint, LocalPlacement, prometheus_config
from components.local.platform import build_platform
from shipway_core.config import parse_stack_config
from tests.support.recording import record

ROOT = Path(__file__).resolve().parents[3]
DYNAMIC = "pulumi-python:dynamic:Resource"


def local_config(**changes):
    raw = {
        "cloud": "local", "environment": "local", "owner": "ml-platform", "costCenter": "cc-1",
        "dataClassification": "internal",
        "models": {"iris-classifier": {"version": 3}, "churn-model": {"version": 7}},
        "local": {"dataDir": "/tmp/shipway-unit"},
        **changes,
    }
    return parse_stack_config("local", raw)


def build(cfg):
    return record(lambda: build_platform(cfg, {"endpointApiKey": pulumi.Output.secret("s3cr3t-key")}, ROOT),
                  stack="local")


@pytest.fixture(scope="module")
def rec():
    return build(local_config())


def test_component_tree_types_and_names(rec):
    assert rec.names("shipway:local:TrackingServer") == ["tracking"]
    assert rec.names("shipway:local:InferenceEndpoint") == ["churn-model", "iris-classifier"]
    assert rec.names("shipway:registry:ModelPin") == ["churn-model-pin", "iris-classifier-pin"]
    assert rec.names("shipway:local:Secrets") == ["secrets"]
    assert rec.names("shipway:local:Observability") == ["observability"]
    assert rec.names("shipway:local:Tracing") == ["tracing"]
    assert rec.names(DYNAMIC) == sorted([
        "tracking-server", "secrets-endpoint-api-key", "churn-model-pin-alias", "iris-classifier-pin-alias",
        "churn-model-server", "iris-classifier-server", "observability-prometheus", "observability-alertmanager",
        "observability-alert-sink", "observability-delivery-metrics", "tracing-jaeger",
        "telemetry-otelcol", "telemetry-victorialogs",
    ])


def test_every_process_binds_loopback_and_carries_its_kind(rec):
    kinds = {}
    for res in rec.of_type(DYNAMIC):
        kinds[res.name] = res.inputs["shipwayKind"]
        if "host" in res.inputs:
            assert res.inputs["host"] == "127.0.0.1", res.name
    assert kinds["tracking-server"] == "TrackingServer"
    assert kinds["iris-classifier-server"] == "InferenceEndpoint"
    assert kinds["secrets-endpoint-api-key"] == "SecretFile"
    assert kinds["iris-classifier-pin-alias"] == "RegistryPin"


def test_endpoints_pin_exact_versions_on_consecutive_ports(rec):
    churn, iris = rec.named("churn-model-server").inputs, rec.named("iris-classifier-server").inputs
    assert (churn["modelName"], churn["modelVersion"], churn["port"]) == ("churn-model", 7, 8100)
    assert (iris["modelName"], iris["modelVersion"], iris["port"]) == ("iris-classifier", 3, 8101)
    assert iris["pinFile"] == "/tmp/shipway-unit/local/endpoints/iris-classifier/pin.json"
    assert iris["environment"] == "local"


def test_api_key_reaches_endpoints_only_as_a_0600_file_path(rec):
    secret = rec.named("secrets-endpoint-api-key").inputs
    assert secret["mode"] == "0600"
    assert secret["path"] == "/tmp/shipway-unit/local/secrets/endpoint-api-key"
    endpoint = rec.named("iris-classifier-server").inputs
    assert endpoint["apiKeyFile"] == secret["path"]
    assert "s3cr3t-key" not in repr(endpoint)
    for res in rec.of_type(DYNAMIC):
        if res.name != "secrets-endpoint-api-key":
            assert "s3cr3t-key" not in repr(res.inputs), res.name


def test_registry_pins_point_the_environment_alias(rec):
    pin = rec.named("iris-classifier-pin-alias").inputs
    assert (pin["modelName"], pin["version"], pin["alias"], pin["retainOnDelete"]) == (
        "iris-classifier", 3, "local", False)


def test_protected_registry_pins_are_retained_on_delete():
    rec = build(local_config(protectRegistry=True))
    assert rec.named("iris-classifier-pin-alias").inputs["retainOnDelete"] is True


def test_prometheus_scrapes_every_endpoint_and_alerts_to_alertmanager(rec):
    prom = rec.named("observability-prometheus").inputs
    assert "job_name: shipway-endpoints" in prom["configYaml"]
    assert "127.0.0.1:8100" in prom["configYaml"] and "127.0.0.1:8101" in prom["configYaml"]
    assert "127.0.0.1:9093" in prom["configYaml"]
    assert "ShipwayFeatureDrift" in prom["rulesYaml"]
    am = rec.named("observability-alertmanager").inputs
    assert am["port"] == 9093


def test_jaeger_listens_only_on_loopback(rec):
    config = rec.named("tracing-jaeger").inputs["configYaml"]
    assert "0.0.0.0" not in config  # noqa: S104 - asserting the opposite
    # The collector owns 4317/4318 on the local stack; Jaeger's own OTLP port is local.jaegerOtlpPort.
    assert "127.0.0.1:4320" in config and "127.0.0.1:16686" in config


def test_prometheus_scrapes_mlflow_and_jaegers_own_metrics_as_the_pipeline_jobs(rec):
    import yaml

    from shipway_core.observability.pipeline import PIPELINE_JOBS

    tracking = rec.named("tracking-server").inputs
    assert tracking["metricsDir"] == "/tmp/shipway-unit/local/mlflow/prometheus-metrics"
    jaeger = rec.named("tracing-jaeger").inputs
    assert jaeger["metricsPort"] == 14269
    telemetry = yaml.safe_load(jaeger["configYaml"])["service"]["telemetry"]["metrics"]
    assert telemetry["level"] == "normal"
    assert telemetry["readers"] == [{"pull": {"exporter": {"prometheus": {
        "host": "127.0.0.1", "port": 14269, "without_type_suffix": False}}}}]
    prom = rec.named("observability-prometheus").inputs
    jobs = {job["job_name"]: job for job in yaml.safe_load(prom["configYaml"])["scrape_configs"]}
    assert jobs["mlflow"]["static_configs"] == [{"targets": ["127.0.0.1:5000"]}]
    assert jobs["jaeger"]["static_configs"] == [{"targets": ["127.0.0.1:14269"]}]
    assert set(PIPELINE_JOBS) <= set(jobs)  # every pipeline process the local stack runs is scraped
    rules = yaml.safe_load(prom["rulesYaml"])
    pipeline = next(g for g in rules["groups"] if g["name"].endswith("-pipeline"))
    names = {r["alert"] for r in pipeline["rules"]}
    assert {"ShipwayRegistryErrors", "ShipwayTraceIngestionErrors"} <= names
    down = next(r for r in pipeline["rules"] if r["alert"] == "ShipwayPipelineComponentDown")
    assert down["expr"] == ('up{job=~"alertmanager|jaeger|mlflow|otelcol|prometheus|victorialogs"} == 0')


def test_jaeger_metrics_port_may_not_take_its_other_listeners():
    from components.local.components import Tracing

    tags = {"owner": "o", "cost-center": "c", "environment": "local", "data-classification": "internal"}
    for port, owner in ((16687, "placement.port+1 (gRPC query)"), (4320, "otlp_port")):
        with pytest.raises(ValueError) as err:
            record(lambda port=port: Tracing("t", "local", tags, LocalPlacement("/tmp/j", 16686), otlp_port=4320,
                                             binary="/bin/sh", metrics_port=port))
        assert str(err.value) == f"metrics_port: {port} is not valid; already used by {owner}"


def test_jaeger_without_a_metrics_port_serves_no_metrics_listener():
    import yaml

    from components.local.components import jaeger_config

    config = yaml.safe_load(jaeger_config("127.0.0.1", 4320, 16686))
    assert config["service"]["telemetry"]["metrics"] == {"level": "none"}  # never the default 8888


def test_prometheus_config_labels_targets_by_model():
    text = prometheus_config({"a-model": "http://127.0.0.1:8100"}, alertmanager="127.0.0.1:9093")
    assert "model: a-model" in text and "- 127.0.0.1:8100" in text


@pytest.mark.parametrize(("args", "message"), [
    ({"model_version": "latest"}, "model_version: 'latest' is not valid; pin an exact registry version "
                                  "(a positive integer), never 'latest' or an alias"),
    ({"instance_count": 2}, "instance_count: 2 is not valid on the local target; use 1 (one process per model; "
                            "zero-downtime comes from in-process hot swap)"),
    ({"tags": {"owner": "x"}}, "tags: missing cost-center, environment, data-classification; every Shipway "
                               "resource carries owner, cost-center, environment, data-classification"),
])
def test_endpoint_validates_before_creating_anything(args, message):
    base = {"environment": "local", "model_name": "iris-classifier", "model_version": 1,
            "tracking_uri": "http://127.0.0.1:5000",
            "tags": {"owner": "o", "cost-center": "c", "environment": "local", "data-classification": "internal"}}

    def make():
        InferenceEndpoint("e", InferenceEndpointArgs(**{**base, **args}), LocalPlacement("/tmp/x", 8100),
                          api_key_file="/tmp/x/key")

    with pytest.raises(ValueError) as err:
        record(make)
    assert str(err.value) == message


def test_placement_must_be_absolute():
    with pytest.raises(ValueError, match=r"^placement.data_dir: 'rel/dir' is not valid; use an absolute path$"):
        LocalPlacement("rel/dir", 8100).validate("placement")


def test_alertmanager_routes_every_alert_to_the_stacks_alert_sink(rec):
    sink = rec.named("observability-alert-sink").inputs
    assert (sink["shipwayKind"], sink["host"], sink["port"]) == ("AlertSink", "127.0.0.1", 9095)
    assert sink["alertsFile"] == "/tmp/shipway-unit/local/alerts/alerts.jsonl"
    import yaml

    am = yaml.safe_load(rec.named("observability-alertmanager").inputs["configYaml"])
    assert am["route"]["receiver"] == "local"
    assert am["receivers"] == [{"name": "local", "webhook_configs": [
        {"url": "http://127.0.0.1:9095/alerts", "send_resolved": True}]}]


def test_every_process_announces_its_restart_metric_and_prometheus_scrapes_them(rec):
    targets = "/tmp/shipway-unit/local/prometheus/targets"
    processes = [r for r in rec.of_type(DYNAMIC) if "port" in r.inputs]
    assert {r.name for r in processes} == {
        "tracking-server", "churn-model-server", "iris-classifier-server", "observability-prometheus",
        "observability-alertmanager", "observability-alert-sink", "observability-delivery-metrics",
        "tracing-jaeger", "telemetry-otelcol", "telemetry-victorialogs"}
    assert all(r.inputs["metricsTargetsDir"] == targets for r in processes)
    import yaml

    prom = yaml.safe_load(rec.named("observability-prometheus").inputs["configYaml"])
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["shipway-supervisors"]["file_sd_configs"] == [{"files": [f"{targets}/*.json"],
                                                               "refresh_interval": "5s"}]


def test_prometheus_scrapes_the_delivery_exporter_reading_the_repos_audit_trail(rec):
    exporter = rec.named("observability-delivery-metrics").inputs
    assert (exporter["shipwayKind"], exporter["host"], exporter["port"]) == ("DeliveryMetrics", "127.0.0.1", 9096)
    assert exporter["auditLog"] == str(ROOT / ".shipway" / "audit" / "audit.jsonl")
    assert exporter["dataDir"] == "/tmp/shipway-unit/local/delivery"
    import yaml

    prom = yaml.safe_load(rec.named("observability-prometheus").inputs["configYaml"])
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["shipway-delivery"]["static_configs"] == [{"targets": ["127.0.0.1:9096"]}]


def test_the_delivery_exporter_needs_an_absolute_audit_trail_path():
    from components.common import ObservabilityArgs
    from components.local.components import Observability

    tags = {"owner": "o", "cost-center": "c", "environment": "local", "data-classification": "internal"}
    with pytest.raises(ValueError) as err:
        record(lambda: Observability("o", ObservabilityArgs(environment="local", tags=tags),
                                     LocalPlacement("/tmp/p", 9090), "groups: []\n", LocalPlacement("/tmp/a", 9093),
                                     delivery=LocalPlacement("/tmp/d", 9096), audit_log="audit.jsonl"))
    assert str(err.value) == ("audit_log: 'audit.jsonl' is not valid; the delivery exporter needs the absolute "
                              "path of the audit trail (<repo>/.shipway/audit/audit.jsonl)")


def test_pinned_ports_keep_each_endpoint_where_it_was_when_a_model_sorting_first_is_added():
    before = build(local_config(models={"iris-classifier": {"version": 3}}))
    after = build(local_config(models={"iris-classifier": {"version": 3, "port": 8100},
                                       "churn-model": {"version": 7, "port": 8101},
                                       "anomaly-model": {"version": 1, "port": 8102}}))
    iris_before = before.named("iris-classifier-server").inputs
    iris_after = after.named("iris-classifier-server").inputs
    # Same inputs: the engine sees no change, so the endpoint is neither moved nor restarted.
    assert {k: v for k, v in iris_after.items()} == {k: v for k, v in iris_before.items()}
    assert after.named("churn-model-server").inputs["port"] == 8101
    assert after.named("anomaly-model-server").inputs["port"] == 8102
    prom = after.named("observability-prometheus").inputs["configYaml"]
    assert all(f"127.0.0.1:{p}" in prom for p in (8100, 8101, 8102))
