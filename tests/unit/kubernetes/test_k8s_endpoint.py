"""InferenceEndpoint: recorded children, every security field, rollout, autoscaling, networking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pytest
from k8s_support import env_of, is_secret, plain, pod_spec

from components.common import InferenceEndpointArgs
from components.kubernetes.endpoint import InferenceEndpoint
from shipway_core.config import KubernetesSettings
from tests.support.recording import Recording, record

TAGS = {
    "owner": "ml-platform",
    "cost-center": "cc-1234",
    "environment": "prod",
    "data-classification": "confidential",
    "managed-by": "shipway",
}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SELECTOR = {
    "app.kubernetes.io/name": "serve-churn",
    "app.kubernetes.io/component": "inference-endpoint",
    "app.kubernetes.io/part-of": "shipway",
}


def endpoint_args(**overrides: object) -> InferenceEndpointArgs:
    base = InferenceEndpointArgs(
        environment="prod",
        model_name="churn",
        model_version=7,
        tracking_uri="http://mlflow.shipway-prod.svc.cluster.local:5000",
        tags=TAGS,
        instance_count=2,
        api_key=None,
        otlp_endpoint="http://collector.shipway-prod.svc.cluster.local:4318",
    )
    return dataclasses.replace(base, **overrides)


def build(
    args: InferenceEndpointArgs | None = None, settings: KubernetesSettings | None = None, **kwargs: object
) -> Recording:
    def program() -> InferenceEndpoint:
        a = args or endpoint_args(api_key=pulumi.Output.secret("k-123"))
        return InferenceEndpoint("serve-churn", a, settings or KubernetesSettings(), **kwargs)

    return record(program, stack="prod")


@pytest.fixture(scope="module")
def rec() -> Recording:
    return build()


def test_children_exact_types_and_names(rec: Recording) -> None:
    assert rec.one("shipway:kubernetes:InferenceEndpoint").name == "serve-churn"
    assert sorted((r.type, r.name) for r in rec.resources if r.type.startswith("kubernetes:")) == [
        ("kubernetes:apps/v1:Deployment", "serve-churn-deployment"),
        ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "serve-churn-autoscaler"),
        ("kubernetes:core/v1:Secret", "serve-churn-api-key"),
        ("kubernetes:core/v1:Service", "serve-churn-service"),
        ("kubernetes:core/v1:ServiceAccount", "serve-churn-account"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "serve-churn-network"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "serve-churn-disruption-budget"),
    ]
    # The endpoint needs no Kubernetes API access, so it gets no Role at all.
    assert rec.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role") == []


def test_container_security_context_is_restricted(rec: Recording) -> None:
    spec = pod_spec(rec.one(DEPLOYMENT))
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
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "serve-churn"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }


def test_probes_gate_on_ready_and_health(rec: Recording) -> None:
    (container,) = pod_spec(rec.one(DEPLOYMENT))["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 300
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_rollout_never_drops_below_ready_capacity(rec: Recording) -> None:
    spec = plain(rec.one(DEPLOYMENT).inputs["spec"])
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["minReadySeconds"] == 10
    assert spec["replicas"] == 2  # the pinned floor at creation; the HPA owns it afterwards
    assert spec["selector"] == {"matchLabels": SELECTOR}
    assert spec["template"]["metadata"]["labels"] == SELECTOR


def test_model_pin_reaches_container_as_env_and_annotations(rec: Recording) -> None:
    deployment = plain(rec.one(DEPLOYMENT).inputs)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["SHIPWAY_MODEL_NAME"] == "churn"
    assert env["SHIPWAY_MODEL_VERSION"] == "7"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.shipway-prod.svc.cluster.local:5000"
    assert env["SHIPWAY_API_KEY_FILE"] == "/var/run/secrets/shipway/api-key"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.shipway-prod.svc.cluster.local:4318"
    pin = {"shipway.dev/model-name": "churn", "shipway.dev/model-version": "7"}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == pin
    assert pin.items() <= deployment["metadata"]["annotations"].items()


def test_api_key_is_a_secret_mounted_as_a_file_never_env(rec: Recording) -> None:
    secret = rec.one("kubernetes:core/v1:Secret", "serve-churn-api-key")
    assert is_secret(secret.inputs["stringData"])
    assert plain(secret.inputs["stringData"]) == {"value": "k-123"}
    assert secret.inputs["metadata"]["name"] == "serve-churn-api-key"
    spec = pod_spec(rec.one(DEPLOYMENT))
    assert spec["volumes"][0] == {
        "name": "api-key",
        "secret": {
            "secretName": "serve-churn-api-key",
            "defaultMode": 0o440,
            "items": [{"key": "value", "path": "api-key"}],
        },
    }
    (container,) = spec["containers"]
    assert {"name": "api-key", "mountPath": "/var/run/secrets/shipway", "readOnly": True} in container["volumeMounts"]
    assert all("valueFrom" not in e for e in container["env"])
    assert "envFrom" not in container
    assert "k-123" not in str(container)


def test_hpa_autoscaling_v2_from_pinned_floor(rec: Recording) -> None:
    hpa = plain(rec.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "serve-churn",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_pdb_and_topology_spread(rec: Recording) -> None:
    pdb = plain(rec.one("kubernetes:policy/v1:PodDisruptionBudget").inputs)
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": SELECTOR},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    spread = pod_spec(rec.one(DEPLOYMENT))["topologySpreadConstraints"]
    assert [(s["topologyKey"], s["maxSkew"], s["labelSelector"]) for s in spread] == [
        ("topology.kubernetes.io/zone", 1, {"matchLabels": SELECTOR}),
        ("kubernetes.io/hostname", 1, {"matchLabels": SELECTOR}),
    ]


def test_service_selects_endpoint_pods_only(rec: Recording) -> None:
    svc = plain(rec.one("kubernetes:core/v1:Service").inputs)
    assert svc["metadata"]["name"] == "serve-churn"
    assert svc["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR,
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }
    account = plain(rec.one("kubernetes:core/v1:ServiceAccount").inputs)
    assert account["automountServiceAccountToken"] is False


def test_network_policy_allows_ingress_prometheus_and_tracking_only(rec: Recording) -> None:
    spec = plain(rec.one(NETPOL).inputs["spec"])
    assert spec["podSelector"] == {"matchLabels": SELECTOR}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    ns = "kubernetes.io/metadata.name"
    assert spec["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {ns: "ingress-nginx"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },
        {
            "from": [{"namespaceSelector": {"matchLabels": {ns: "monitoring"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },
    ]
    shipway = {"app.kubernetes.io/part-of": "shipway"}
    assert spec["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "tracking-server", **shipway}}}],
            "ports": [{"port": 5000, "protocol": "TCP"}],
        },
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "otel-collector", **shipway}}}],
            "ports": [{"port": 4317, "protocol": "TCP"}, {"port": 4318, "protocol": "TCP"}],
        },
    ]


def test_existing_secret_reference_creates_no_secret() -> None:
    rec = build(endpoint_args(api_key=None), api_key_secret="secrets-endpoint-api-key", namespace="team-ns")  # noqa: S106
    assert rec.of_type("kubernetes:core/v1:Secret") == []
    spec = pod_spec(rec.one(DEPLOYMENT))
    assert spec["volumes"][0]["secret"]["secretName"] == "secrets-endpoint-api-key"
    assert rec.one(DEPLOYMENT).inputs["metadata"]["namespace"] == "team-ns"


def test_external_tracking_opens_https_egress_instead_of_tracking_pods() -> None:
    rec = build(external_tracking=True)
    egress = plain(rec.one(NETPOL).inputs["spec"])["egress"]
    assert egress[0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert egress[0]["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in egress[0]["to"][0]["ipBlock"]["except"]


def test_external_secrets_make_an_external_secret_for_the_key() -> None:
    rec = build(endpoint_args(api_key=None), KubernetesSettings(external_secrets=True))
    ext = rec.one("kubernetes:external-secrets.io/v1:ExternalSecret", "serve-churn-api-key")
    assert ext.inputs["spec"]["dataFrom"] == [{"extract": {"key": "shipway/prod/endpoint-api-key"}}]
    assert ext.inputs["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "shipway"}
    assert rec.of_type("kubernetes:core/v1:Secret") == []


def test_kserve_replaces_deployment_with_canaried_inference_service() -> None:
    rec = build(settings=KubernetesSettings(kserve=True, kserve_canary_percent=20))
    assert rec.of_type(DEPLOYMENT) == []
    assert rec.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") == []
    metrics = plain(rec.one("kubernetes:core/v1:Service", "serve-churn-metrics-service").inputs)
    assert metrics["metadata"]["labels"]["shipway.dev/scrape-job"] == "shipway-endpoints"
    assert metrics["spec"]["clusterIP"] == "None" and metrics["spec"]["selector"] == SELECTOR
    isvc = plain(
        rec.one("kubernetes:serving.kserve.io/v1beta1:InferenceService", "serve-churn-inference-service").inputs
    )
    predictor = isvc["spec"]["predictor"]
    assert (predictor["canaryTrafficPercent"], predictor["minReplicas"], predictor["maxReplicas"]) == (
        20,
        2,
        6,
    )
    assert predictor["automountServiceAccountToken"] is False
    assert predictor["labels"] == SELECTOR
    (container,) = predictor["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert env_of(container)["SHIPWAY_MODEL_VERSION"] == "7"
    ingress_ns = [
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in plain(rec.one(NETPOL).inputs["spec"])["ingress"][0]["from"]
    ]
    assert ingress_ns == ["ingress-nginx", "knative-serving"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"model_version": 0},
            "model_version: 0 is not valid; pin an exact registry version "
            "(a positive integer), never 'latest' or an alias",
        ),
        (
            {"model_version": "latest"},
            "model_version: 'latest' is not valid; pin an exact registry version "
            "(a positive integer), never 'latest' or an alias",
        ),
        ({"instance_count": 1}, "instance_count: 1 is not valid in prod; use at least 2 for availability"),
        (
            {"tags": {"owner": "x"}},
            "tags: missing cost-center, environment, data-classification; every Shipway "
            "resource carries owner, cost-center, environment, data-classification",
        ),
    ],
)
def test_invalid_args_rejected_before_any_resource(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        InferenceEndpoint("serve-churn", endpoint_args(**overrides), KubernetesSettings())
    assert str(err.value) == message


def test_missing_api_key_is_an_error_naming_the_config_key() -> None:
    with pytest.raises(ValueError) as err:
        build(endpoint_args(api_key=None))
    assert str(err.value) == (
        "endpointApiKey: None is not valid; set it with `pulumi config set --secret "
        "shipway:endpointApiKey` or turn on kubernetes.externalSecrets"
    )


def test_container_runs_the_images_own_entrypoint_as_the_kubernetes_platform(rec: Recording) -> None:
    (container,) = pod_spec(rec.one(DEPLOYMENT))["containers"]
    assert "command" not in container and "args" not in container
    assert env_of(container)["SHIPWAY_PLATFORM"] == "kubernetes"
    assert env_of(container)["SHIPWAY_PIN_FILE"] == "/tmp/pin.json"  # noqa: S108 - the tmp emptyDir


def test_pod_env_is_what_the_image_start_up_reads(tmp_path: Path, rec: Recording) -> None:
    """Run the image's start-up for real on the pod's env: the pin, port, key file and collector."""
    from shipway.serving.config import read_pin
    from shipway.serving.platform import startup

    (container,) = pod_spec(rec.one(DEPLOYMENT))["containers"]
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    env["SHIPWAY_PIN_FILE"] = str(tmp_path / "pin.json")
    start = startup(env, tmp_path)
    config = start.config
    assert (config.host, config.port, config.environment) == ("0.0.0.0", 8080, "prod")  # noqa: S104
    assert config.api_key_file == "/var/run/secrets/shipway/api-key"
    assert config.otlp_endpoint == "http://collector.shipway-prod.svc.cluster.local:4318"
    assert start.model_dir is None  # from the registry
    pin = read_pin(config.pin_file)
    assert (pin.model_name, pin.model_version, pin.tracking_uri) == (
        "churn",
        7,
        "http://mlflow.shipway-prod.svc.cluster.local:5000",
    )


def test_service_carries_the_shared_scrape_job_label(rec: Recording) -> None:
    labels = rec.one("kubernetes:core/v1:Service").inputs["metadata"]["labels"]
    assert labels["shipway.dev/scrape-job"] == "shipway-endpoints"
    assert labels["app.kubernetes.io/component"] == "inference-endpoint"


def test_replicas_are_handed_to_the_hpa_after_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocks do not record options, so capture the Deployment's opts on the way in."""
    import pulumi_kubernetes as k8s

    seen: dict[str, pulumi.ResourceOptions] = {}
    real = k8s.apps.v1.Deployment

    def spy(name: str, *args: object, opts: pulumi.ResourceOptions | None = None, **kwargs: object) -> object:
        seen[name] = opts  # type: ignore[assignment]
        return real(name, *args, opts=opts, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(k8s.apps.v1, "Deployment", spy)
    rec = build()
    assert seen["serve-churn-deployment"].ignore_changes == ["spec.replicas"]
    assert seen["serve-churn-deployment"].parent is rec.result
