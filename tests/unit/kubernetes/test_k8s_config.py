"""The ``kubernetes:`` section of a stack file: every key parsed, bad ones named exactly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from k8s_support import stack_config

from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from components.kubernetes import (
    EnvironmentNamespace,
    EnvironmentNamespaceArgs,
    InferenceEndpoint,
    Observability,
    Secrets,
    TrackingServer,
)
from components.kubernetes.platform import build_platform
from components.kubernetes.podspec import camel, label_value, namespace_name
from shipway_core.config import KubernetesSettings, StackConfigError


def test_all_keys_parse_into_settings() -> None:
    cfg = stack_config(
        kubernetes={
            "namespace": "ml-dev",
            "artifactStore": "azureblob",
            "artifactUri": "wasbs://models@acct.blob.core.windows.net/mlflow",
            "artifactIdentity": "00000000-0000-0000-0000-0000000000aa",
            "trackingDatabaseUri": "postgresql://mlflow@pg.example.internal:5432/mlflow",
            "otlpExportEndpoint": "https://otlp.example.com",
            "storageClass": "premium",
            "ingressNamespace": "traefik",
            "monitoringNamespace": "observability",
            "externalSecrets": True,
            "externalSecretStore": "vault",
            "kserve": True,
            "kserveCanaryPercent": 25,
            "quotaCpu": "8",
            "quotaMemory": "16Gi",
        }
    )
    k = cfg.kubernetes
    assert (k.namespace, k.artifact_store, k.artifact_identity, k.storage_class) == (
        "ml-dev",
        "azureblob",
        "00000000-0000-0000-0000-0000000000aa",
        "premium",
    )
    assert (k.ingress_namespace, k.monitoring_namespace, k.external_secret_store) == (
        "traefik",
        "observability",
        "vault",
    )
    assert (k.kserve, k.kserve_canary_percent, k.quota_cpu, k.quota_memory) == (True, 25, "8", "16Gi")
    assert k.tracking_database_uri == "postgresql://mlflow@pg.example.internal:5432/mlflow"


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(StackConfigError) as err:
        stack_config(
            kubernetes={
                "trackingDatabaseUri": "postgresql://mlflow:hunter2@db/mlflow",
                "kserveCanaryPercent": 101,
                "quotaMemory": "lots",
                "ingressNamespace": "Ingress_NS",
            }
        )
    assert err.value.problems == [
        "shipway:kubernetes.trackingDatabaseUri: 'postgresql://mlflow:hunter2@db/mlflow' is not valid; "
        "use postgresql://user@host:5432/db without a password (it comes from trackingDbPassword)",
        "shipway:kubernetes.kserveCanaryPercent: 101 is not valid; use an integer percentage from 0 to 100",
        "shipway:kubernetes.quotaMemory: 'lots' is not valid; use a Kubernetes quantity such as 32Gi",
        "shipway:kubernetes.ingressNamespace: 'Ingress_NS' is not valid; use a DNS-1123 label",
    ]


@pytest.mark.parametrize(
    ("environment", "configured", "expected"), [("dev", None, "shipway-dev"), ("prod", "ml-prod", "ml-prod")]
)
def test_namespace_name(environment: str, configured: str | None, expected: str) -> None:
    assert namespace_name(environment, KubernetesSettings(namespace=configured)) == expected


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("ML Platform", "ML-Platform"),
        ("a@b.com", "a-b.com"),
        ("--x--", "x"),
        ("@@@", "unset"),
        ("x" * 80, "x" * 63),
    ],
)
def test_label_value(text: str, label: str) -> None:
    assert label_value(text) == label


def test_camel_leaves_user_maps_alone() -> None:
    spec = {
        "min_replicas": 1,
        "labels": {"grafana_dashboard": "1"},
        "env": [{"name": "A_B", "value_from": 1}],
        "pod": {"match_labels": {"app_name": "x"}},
    }
    assert camel(spec) == {
        "minReplicas": 1,
        "labels": {"grafana_dashboard": "1"},
        "env": [{"name": "A_B", "valueFrom": 1}],
        "pod": {"matchLabels": {"app_name": "x"}},
    }


TAGS = {"owner": "o", "cost-center": "c", "environment": "dev", "data-classification": "internal"}
ENDPOINT_ARGS = InferenceEndpointArgs("dev", "churn", 1, "http://t", TAGS, api_key="k")


def _name_error(name: str, limit: int) -> str:
    return (
        f"name: {name!r} is not valid; use a DNS-1035 label (lowercase letters, digits and '-', "
        f"starting with a letter) of at most {limit} characters"
    )


@pytest.mark.parametrize(
    ("build", "name", "limit"),
    [
        (lambda n: InferenceEndpoint(n, ENDPOINT_ARGS, KubernetesSettings()), "e" * 56, 55),
        (lambda n: InferenceEndpoint(n, ENDPOINT_ARGS, KubernetesSettings()), "Serve_Churn", 55),
        (
            lambda n: TrackingServer(n, TrackingServerArgs("dev", TAGS), KubernetesSettings(), db_password="p"),
            "t" * 51,
            50,
        ),
        (lambda n: Observability(n, ObservabilityArgs("dev", TAGS), KubernetesSettings()), "o" * 41, 40),
        (
            lambda n: EnvironmentNamespace(n, EnvironmentNamespaceArgs("dev", TAGS), KubernetesSettings()),
            "1shipway",
            50,
        ),
    ],
)
def test_component_names_must_fit_kubernetes_names(build: Callable[[str], object], name: str, limit: int) -> None:
    with pytest.raises(ValueError) as err:
        build(name)
    assert str(err.value) == _name_error(name, limit)


def test_secret_object_names_must_fit() -> None:
    with pytest.raises(ValueError) as err:
        Secrets("s" * 43, SecretsArgs("dev", TAGS, values={"trackingDbPassword": "p"}), KubernetesSettings())
    assert str(err.value) == _name_error("s" * 43 + "-tracking-db-password", 63)


def test_platform_rejects_a_model_name_too_long_for_its_endpoint() -> None:
    model = "m" * 50
    with pytest.raises(ValueError) as err:
        build_platform(stack_config(models={model: {"version": 1}}), {})
    assert str(err.value) == _name_error(f"serve-{model}", 55)


@pytest.mark.parametrize("environment", ["test", "prod"])
def test_promoted_environments_refuse_the_single_pod_registry_stores(environment: str) -> None:
    """test/prod: object-storage artifacts and a managed database, or one error naming both keys."""
    from shipway_core.config import StackConfigError, parse_stack_config
    from tests.support.stacks import KUBERNETES_IMAGES

    raw = {"cloud": "kubernetes", "environment": environment, "owner": "o", "costCenter": "c",
           "dataClassification": "internal", "models": {"churn": {"version": 1}},
           "kubernetes": {**KUBERNETES_IMAGES, "artifactStore": "pvc"}}
    with pytest.raises(StackConfigError) as error:
        parse_stack_config(environment, raw)
    text = str(error.value)
    assert "shipway:kubernetes.artifactStore: 'pvc' is not valid" in text
    assert "shipway:kubernetes.trackingDatabaseUri: is required" in text
    dev = parse_stack_config("dev", {**raw, "environment": "dev"})
    assert dev.kubernetes.artifact_store == "pvc" and dev.kubernetes.tracking_database_uri is None
