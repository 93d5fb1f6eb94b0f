"""build_platform under recording mocks: the whole platform, schema-valid, and pin-only changes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pytest
from k8s_support import (
    WORKLOAD_TYPES,
    containers,
    diff_paths,
    env_of,
    manifest,
    manifests,
    plain,
    pod_spec,
    secret_outputs,
    stack_config,
)

from components.kubernetes.platform import build_platform
from shipway_core.config import StackConfig
from shipway_core.observability.rules import ALERT_NAMES
from shipway_core.outputs import PlatformOutputs
from tests.support.recording import Recording, record, resolve

# Custom resources whose CRDs kubernetes-validate has no schema for; validated by shape tests instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ExternalSecret", "InferenceService"}
VERSIONS = sorted({"1.33", kubernetes_validate.latest_version()})


def run(cfg: StackConfig, secrets: dict[str, pulumi.Output[str]] | None = None) -> Recording:
    return record(lambda: build_platform(cfg, secret_outputs() if secrets is None else secrets), stack=cfg.stack)


@pytest.fixture(scope="module")
def prod() -> Recording:
    """prod: object-storage artifacts and a managed database (what config.py requires there)."""
    return run(
        stack_config("prod", models={"churn": {"version": 3, "instances": 2}, "fraud": {"version": 12, "instances": 3}})
    )


@pytest.fixture(scope="module")
def dev_stores() -> Recording:
    """dev's in-cluster PostgreSQL StatefulSet and artifact volume (the objects prod does not have)."""
    return run(stack_config("dev"))


def in_cluster_stores(dev: Recording) -> list[Any]:
    return [r for r in dev.resources if r.type in ("kubernetes:apps/v1:StatefulSet",
                                                   "kubernetes:core/v1:PersistentVolumeClaim")
            or (r.type.startswith("kubernetes:") and "postgres" in r.name)]


def test_component_tree(prod: Recording) -> None:
    assert sorted((r.type, r.name) for r in prod.resources if r.type.startswith("shipway:")) == [
        ("shipway:kubernetes:EnvironmentNamespace", "shipway"),
        ("shipway:kubernetes:InferenceEndpoint", "serve-churn"),
        ("shipway:kubernetes:InferenceEndpoint", "serve-fraud"),
        ("shipway:kubernetes:Observability", "observability"),
        ("shipway:kubernetes:Secrets", "secrets"),
        ("shipway:kubernetes:TrackingServer", "mlflow"),
    ]
    # The platform uses the shared Secret objects: no component makes its own copy.
    assert prod.names("kubernetes:core/v1:Secret") == [
        "secrets-endpoint-api-key",
        "secrets-tracking-db-password",
    ]
    assert prod.names("kubernetes:apps/v1:Deployment") == [
        "mlflow-deployment",
        "observability-otel-collector-deployment",
        "serve-churn-deployment",
        "serve-fraud-deployment",
    ]


def test_outputs(prod: Recording) -> None:
    out = resolve(prod.result.exports())
    assert PlatformOutputs.from_exports(out, stack="prod").endpoints["churn"].version == 3
    assert out == {
        "cloud": "kubernetes",
        "environment": "prod",
        "trackingUri": "http://mlflow.shipway-prod.svc.cluster.local:5000",
        "registryUri": "http://mlflow.shipway-prod.svc.cluster.local:5000",
        "endpoints": {
            m: {"url": f"http://serve-{m}.shipway-prod.svc.cluster.local", "version": v,
                "status": f"kubernetes:shipway-prod/serve-{m}", "apiKeyRef": "secrets-endpoint-api-key",
                "requestLog": None}
            for m, v in (("churn", 3), ("fraud", 12))
        },
        # No log store in the cluster yet (the collector forwards to kubernetes.otlpExportEndpoint).
        "observability": {"metricsUrl": None, "alertsUrl": None, "dashboardsUrl": None,
                          "tracesUrl": "http://observability-otel-collector.shipway-prod.svc.cluster.local:4318",
                          "logStoreUrl": None, "logQueryUrl": None},
        "target": {
            "namespace": "shipway-prod",
            # the shared model rules, then the namespace's pipeline-health rules (collector, MLflow)
            "alertRules": [*ALERT_NAMES, "ShipwayPipelineComponentDown", "ShipwayTelemetryDropped",
                           "ShipwayRegistryErrors"],
            "secretNames": {
                "endpointApiKey": "secrets-endpoint-api-key",
                "trackingDbPassword": "secrets-tracking-db-password",
            },
        },
    }


def test_every_namespaced_object_is_in_the_environment_namespace(prod: Recording) -> None:
    for m in manifests(prod):
        if m["kind"] != "Namespace":
            assert m["metadata"]["namespace"] == "shipway-prod", m["metadata"]["name"]
        assert m["metadata"]["labels"]["cost-center"] == "cc-1234", m["metadata"]["name"]


def test_every_pod_meets_pod_security_restricted(prod: Recording, dev_stores: Recording) -> None:
    workloads = [r for t in WORKLOAD_TYPES for r in [*prod.of_type(t), *dev_stores.of_type(t)]
                 if t == "kubernetes:apps/v1:StatefulSet" or r in prod.resources]
    assert len(workloads) == 5  # MLflow (2 replicas in prod), collector, 2 endpoints + dev's PostgreSQL
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload.name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, workload.name
        assert spec.get("hostNetwork") is None and spec.get("hostPID") is None, workload.name
        for c in containers(spec):
            ctx = c["securityContext"]
            assert (
                ctx["runAsNonRoot"],
                ctx["readOnlyRootFilesystem"],
                ctx["allowPrivilegeEscalation"],
                ctx["capabilities"],
                ctx["seccompProfile"],
            ) == (True, True, False, {"drop": ["ALL"]}, {"type": "RuntimeDefault"}), workload.name
            assert c["resources"]["limits"] and c["resources"]["requests"], workload.name
            assert c["readinessProbe"] and c["livenessProbe"], workload.name
            # Secrets reach pods as files only.
            assert all("valueFrom" not in e for e in c.get("env", [])), workload.name
            assert "envFrom" not in c, workload.name


def test_only_the_collector_gets_an_api_token(prod: Recording, dev_stores: Recording) -> None:
    tokens = {
        r.name: r.inputs["automountServiceAccountToken"]
        for r in [*prod.of_type("kubernetes:core/v1:ServiceAccount"), *in_cluster_stores(dev_stores)]
        if r.type == "kubernetes:core/v1:ServiceAccount"
    }
    assert tokens == {
        "mlflow-account": False,
        "mlflow-postgres-account": False,
        "observability-otel-collector-account": True,
        "serve-churn-account": False,
        "serve-fraud-account": False,
    }
    assert prod.names("kubernetes:rbac.authorization.k8s.io/v1:Role") == ["observability-otel-collector-role"]


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_manifests_pass_the_kubernetes_schema(prod: Recording, dev_stores: Recording, version: str) -> None:
    skipped: list[str] = []
    validated: list[str] = []
    store_names = {r.inputs.get("metadata", {}).get("name") for r in in_cluster_stores(dev_stores)}
    dev_only = [m for m in manifests(dev_stores) if m["metadata"]["name"] in store_names]
    for m in [*manifests(prod), *dev_only]:
        name = f"{m['kind']}/{m['metadata']['name']}"
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append(name)
            continue
        validated.append(name)
    assert sorted(skipped) == [
        "PrometheusRule/observability-slo",
        "ServiceMonitor/observability-inference-endpoint",
        "ServiceMonitor/observability-otel-collector",
        "ServiceMonitor/observability-tracking-server",
    ]
    assert len(validated) == 36  # namespace 5 + secrets 2 + tracking 9 + collector 8 + 2 endpoints x 6
    assert {n.split("/")[0] for n in validated} == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "LimitRange",
        "Namespace",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    }


def test_schema_validator_catches_a_bad_manifest(prod: Recording) -> None:
    """Guard that the validation above can fail: a typo'd field is rejected in strict mode."""
    deployment = manifest(prod.one("kubernetes:apps/v1:Deployment", "serve-churn-deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_kserve_and_external_secrets_manifests_validate_except_named_crds() -> None:
    cfg = stack_config(
        "dev",
        models={"churn": {"version": 3}},
        kubernetes={
            "kserve": True,
            "externalSecrets": True,
            "artifactStore": "s3",
            "artifactUri": "s3://models/mlflow",
        },
    )
    rec = run(cfg, secrets={})
    skipped = []
    for m in manifests(rec):
        try:
            kubernetes_validate.validate(m, VERSIONS[-1], strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append((m["kind"], m["metadata"]["name"]))
    assert sorted(skipped) == [
        ("ExternalSecret", "secrets-endpoint-api-key"),
        ("ExternalSecret", "secrets-tracking-db-password"),
        ("InferenceService", "serve-churn"),
        ("PrometheusRule", "observability-slo"),
        ("ServiceMonitor", "observability-inference-endpoint"),
        ("ServiceMonitor", "observability-otel-collector"),
        ("ServiceMonitor", "observability-tracking-server"),
    ]
    assert {kind for kind, _ in skipped} == CRD_KINDS


def _by_urn_name(rec: Recording) -> dict[tuple[str, str], Any]:
    return {(r.type, r.name): plain(r.inputs) for r in rec.resources}


@pytest.mark.parametrize("kserve", [False, True])
def test_changing_only_the_pin_changes_only_the_serving_object(kserve: bool) -> None:
    def cfg(version: int) -> StackConfig:
        return stack_config(
            "prod",
            models={"churn": {"version": version, "instances": 2}, "fraud": {"version": 12, "instances": 2}},
            kubernetes={"kserve": kserve},
        )

    before, after = _by_urn_name(run(cfg(3))), _by_urn_name(run(cfg(4)))
    assert before.keys() == after.keys()
    changed = {key: diff_paths(before[key], after[key]) for key in before if before[key] != after[key]}
    if kserve:
        key = ("kubernetes:serving.kserve.io/v1beta1:InferenceService", "serve-churn-inference-service")
        base = "spec.predictor"
    else:
        key = ("kubernetes:apps/v1:Deployment", "serve-churn-deployment")
        base = "spec.template"
    pod_notes = f"{base}.annotations" if kserve else f"{base}.metadata.annotations"
    containers_path = f"{base}.containers[0].env" if kserve else f"{base}.spec.containers[0].env"
    assert changed == {
        key: [
            "metadata.annotations.shipway.dev/model-version",
            f"{pod_notes}.shipway.dev/model-version",
            f"{containers_path}[1].value",  # SHIPWAY_MODEL_VERSION
            f"{containers_path}[2].value",  # SHIPWAY_MODEL_URI
        ]
    }
    obj = after[key]
    container = (obj["spec"]["predictor"] if kserve else obj["spec"]["template"]["spec"])["containers"][0]
    assert env_of(container)["SHIPWAY_MODEL_VERSION"] == "4"
    assert env_of(container)["SHIPWAY_MODEL_NAME"] == "churn"
    assert env_of(container)["SHIPWAY_MODEL_URI"] == "models:/churn/4"
    if kserve:
        assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10
    else:
        # The rollout the pin triggers: surge one ready pod at a time, never remove one first.
        assert obj["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}


def test_external_registry_points_endpoints_at_it() -> None:
    cfg = stack_config("dev", models={"churn": {"version": 3}}, registryUri="https://mlflow.example.com")
    rec = run(cfg)
    (container,) = pod_spec(rec.one("kubernetes:apps/v1:Deployment", "serve-churn-deployment"))["containers"]
    assert env_of(container)["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    egress = plain(rec.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "serve-churn-network").inputs)
    assert egress["spec"]["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert resolve(rec.result.registry_uri) == "https://mlflow.example.com"


@pytest.mark.parametrize(
    ("cfg", "secrets", "message"),
    [
        (
            stack_config("dev"),
            {"endpointApiKey": "x"},
            "secrets: missing trackingDbPassword; set each with `pulumi config set --secret shipway:<key>` "
            "or turn on kubernetes.externalSecrets",
        ),
        (
            stack_config("dev", cloud="local"),
            {},
            "cloud: 'local' is not valid for this builder; allowed: kubernetes",
        ),
    ],
)
def test_platform_inputs_validated_first(cfg: StackConfig, secrets: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_platform(cfg, secrets)
    assert str(err.value) == message
