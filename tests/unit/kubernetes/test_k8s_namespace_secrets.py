"""EnvironmentNamespace and Secrets: Pod Security labels, quota, default deny, secret objects."""

from __future__ import annotations

import pulumi
import pytest
from k8s_support import is_secret, plain

from components.common import SecretsArgs
from components.kubernetes.namespace import EnvironmentNamespace, EnvironmentNamespaceArgs
from components.kubernetes.secrets import Secrets, secret_suffix
from shipway_core.config import KubernetesSettings
from tests.support.recording import Recording, record, resolve

TAGS = {
    "owner": "ML Platform",
    "cost-center": "cc-1234",
    "environment": "test",
    "data-classification": "restricted",
    "managed-by": "shipway",
}
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


@pytest.fixture(scope="module")
def ns_rec() -> Recording:
    return record(
        lambda: EnvironmentNamespace("shipway", EnvironmentNamespaceArgs("test", TAGS), KubernetesSettings()),
        stack="test",
    )


def test_namespace_children(ns_rec: Recording) -> None:
    assert ns_rec.one("shipway:kubernetes:EnvironmentNamespace").name == "shipway"
    assert sorted((r.type, r.name) for r in ns_rec.resources if r.type.startswith("kubernetes:")) == [
        ("kubernetes:core/v1:LimitRange", "shipway-limits"),
        ("kubernetes:core/v1:Namespace", "shipway-namespace"),
        ("kubernetes:core/v1:ResourceQuota", "shipway-quota"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "shipway-allow-dns"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "shipway-default-deny"),
    ]
    assert resolve(ns_rec.result.namespace_name) == "shipway-test"


def test_pod_security_restricted_and_tag_labels(ns_rec: Recording) -> None:
    meta = plain(ns_rec.one("kubernetes:core/v1:Namespace").inputs["metadata"])
    assert meta["name"] == "shipway-test"
    for mode in ("enforce", "audit", "warn"):
        assert meta["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert meta["labels"][f"pod-security.kubernetes.io/{mode}-version"] == "latest"
    # Free-text tags become valid label values; the exact text is kept as an annotation.
    assert meta["labels"]["owner"] == "ML-Platform"
    assert meta["annotations"]["shipway.dev/tag-owner"] == "ML Platform"
    assert meta["labels"]["data-classification"] == "restricted"


def test_quota_and_limit_range(ns_rec: Recording) -> None:
    quota = plain(ns_rec.one("kubernetes:core/v1:ResourceQuota").inputs)
    assert quota["metadata"]["namespace"] == "shipway-test"
    assert quota["spec"]["hard"] == {
        "requests.cpu": "16",
        "requests.memory": "32Gi",
        "limits.cpu": "16",
        "limits.memory": "32Gi",
        "pods": "100",
        "persistentvolumeclaims": "10",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    (limit,) = plain(ns_rec.one("kubernetes:core/v1:LimitRange").inputs)["spec"]["limits"]
    assert limit == {
        "type": "Container",
        "default": {"cpu": "500m", "memory": "512Mi"},
        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        "max": {"cpu": "4", "memory": "8Gi"},
    }


def test_default_deny_and_dns_only_egress(ns_rec: Recording) -> None:
    deny = plain(ns_rec.one(NETPOL, "shipway-default-deny").inputs)
    assert deny["metadata"]["name"] == "default-deny"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = plain(ns_rec.one(NETPOL, "shipway-allow-dns").inputs)["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    assert dns["egress"] == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
    ]


def test_configured_namespace_and_quota() -> None:
    settings = KubernetesSettings(namespace="ml-prod", quota_cpu="64", quota_memory="128Gi")
    rec = record(
        lambda: EnvironmentNamespace("shipway", EnvironmentNamespaceArgs("prod", TAGS), settings),
        stack="prod",
    )
    assert rec.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"] == "ml-prod"
    assert plain(rec.one("kubernetes:core/v1:ResourceQuota").inputs)["spec"]["hard"]["limits.cpu"] == "64"


def test_secrets_one_encrypted_secret_per_value() -> None:
    values = {"endpointApiKey": pulumi.Output.secret("k-1"), "trackingDbPassword": "plain-in-code"}
    rec = record(
        lambda: Secrets(
            "secrets",
            SecretsArgs("test", TAGS, values=values),
            KubernetesSettings(),
            namespace="shipway-test",
        ),
        stack="test",
    )
    assert rec.one("shipway:kubernetes:Secrets").name == "secrets"
    assert rec.names("kubernetes:core/v1:Secret") == [
        "secrets-endpoint-api-key",
        "secrets-tracking-db-password",
    ]
    for secret in rec.of_type("kubernetes:core/v1:Secret"):
        # Even a value passed as plain text is wrapped secret, so state never holds it in clear.
        assert is_secret(secret.inputs["stringData"])
        assert secret.inputs["type"] == "Opaque"
        assert secret.inputs["metadata"]["namespace"] == "shipway-test"
    assert plain(rec.one("kubernetes:core/v1:Secret", "secrets-tracking-db-password").inputs["stringData"]) == {
        "value": "plain-in-code"
    }
    assert resolve(rec.result.secret_names) == {
        "endpointApiKey": "secrets-endpoint-api-key",
        "trackingDbPassword": "secrets-tracking-db-password",
    }


def test_external_secrets_sync_from_the_store() -> None:
    settings = KubernetesSettings(external_secrets=True, external_secret_store="vault")  # noqa: S106
    rec = record(
        lambda: Secrets("secrets", SecretsArgs("test", TAGS, values={"endpointApiKey": None}), settings),
        stack="test",
    )
    assert rec.of_type("kubernetes:core/v1:Secret") == []
    ext = rec.one("kubernetes:external-secrets.io/v1:ExternalSecret", "secrets-endpoint-api-key")
    assert ext.inputs["metadata"]["namespace"] == "shipway-test"
    assert ext.inputs["spec"] == {
        "refreshInterval": "1h",
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"},
        "target": {"name": "secrets-endpoint-api-key", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
        "dataFrom": [{"extract": {"key": "shipway/test/endpoint-api-key"}}],
    }


@pytest.mark.parametrize(
    ("key", "suffix"),
    [
        ("endpointApiKey", "endpoint-api-key"),
        ("token", "token"),
        ("trackingDbPassword", "tracking-db-password"),
    ],
)
def test_secret_suffix(key: str, suffix: str) -> None:
    assert secret_suffix(key) == suffix


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"bad_key": "x"},
            "values: secret name 'bad_key' is not valid; use the camelCase config key it is set with "
            "(`pulumi config set --secret shipway:<key>`), e.g. endpointApiKey",
        ),
        (
            {"apiKey": None},
            "apiKey: None is not valid; set it with `pulumi config set --secret shipway:apiKey` "
            "or turn on kubernetes.externalSecrets",
        ),
    ],
)
def test_secrets_validation(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Secrets("secrets", SecretsArgs("test", TAGS, values=values), KubernetesSettings())
    assert str(err.value) == message
