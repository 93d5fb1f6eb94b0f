"""build_platform for a prod-like `shipway:cloud: azure` stack, under recording mocks."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.azure._shared import BUILTIN_ROLES, FORBIDDEN_ROLES
from components.azure.platform import build_platform
from shipway_core.config import StackConfig
from shipway_core.outputs import PlatformOutputs
from tests.support.recording import Recording, resolve
from tests.support.stacks import example_config
from tests.unit.azure.provider import PROD_RAW as RAW
from tests.unit.azure.provider import SUBSCRIPTION, record_azure

REQUIRED = {"owner": "ml-team", "cost-center": "cc-42", "environment": "prod",
            "data-classification": "confidential"}
# Resource types that take no tags (extension/child resources and RBAC objects).
UNTAGGED = {
    "azure-native:authorization:RoleAssignment", "azure-native:authorization:RoleDefinition",
    "azure-native:managedidentity:FederatedIdentityCredential", "azure-native:monitor:DiagnosticSetting",
    "azure-native:storage:BlobServiceProperties", "azure-native:network:Subnet",
    "azure-native:network:PrivateDnsZoneGroup", "azure-native:machinelearningservices:ManagedNetworkSettingsRule",
}


def _secrets() -> dict[str, pulumi.Output[str]]:
    return {"endpointApiKey": pulumi.Output.secret("k"), "trackingDbPassword": pulumi.Output.secret("p")}


def _record(raw: dict[str, Any]) -> Recording:
    cfg = example_config("prod", raw)
    return record_azure(lambda: build_platform(cfg, _secrets()))


@pytest.fixture(scope="module")
def prod() -> Recording:
    return _record(RAW)


def test_components_and_resource_types(prod: Recording) -> None:
    components = sorted((r.type, r.name) for r in prod.resources if r.type.startswith("shipway:"))
    assert components == [
        ("shipway:azure:DeployIdentity", "deploy"),
        ("shipway:azure:InferenceEndpoint", "churn"),
        ("shipway:azure:InferenceEndpoint", "iris"),
        ("shipway:azure:Observability", "observability"),
        ("shipway:azure:PrivateNetwork", "network"),
        ("shipway:azure:Secrets", "secrets"),
        ("shipway:azure:TrackingServer", "tracking"),
    ]
    assert prod.one("azure-native:resources:ResourceGroup").inputs["resourceGroupName"] == "shipway-prod"
    assert prod.names("azure-native:machinelearningservices:OnlineDeployment") == [
        "churn-v7", "iris-v3", "iris-v4"]
    assert len(prod.of_type("azure-native:monitor:DiagnosticSetting")) == 7


def test_every_taggable_resource_carries_the_compliance_tags(prod: Recording) -> None:
    for res in prod.resources:
        if res.type.startswith(("shipway:", "pulumi:providers:")) or res.type in UNTAGGED:
            continue
        tags = res.inputs.get("tags", {})
        assert {k: tags.get(k) for k in REQUIRED} == REQUIRED, res.name


def test_model_resources_carry_model_name_and_version(prod: Recording) -> None:
    for name, version in (("iris-v4", "4"), ("iris-v3", "3"), ("churn-v7", "7")):
        tags = prod.one("azure-native:machinelearningservices:OnlineDeployment", name).inputs["tags"]
        assert (tags["model-name"], tags["model-version"]) == (name.split("-")[0], version)


def test_no_role_is_broad_or_broadly_scoped(prod: Recording) -> None:
    rg_scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/"
    for grant in prod.of_type("azure-native:authorization:RoleAssignment"):
        role, scope = grant.inputs["roleDefinitionId"], grant.inputs["scope"]
        assert role.rsplit("/", 1)[-1] not in FORBIDDEN_ROLES.values(), grant.name
        if grant.name in ("deploy-deployer", "deploy-registry-reader"):  # custom, derived roles
            assert role == f"{grant.name}-role-id"
            continue
        assert role.rsplit("/", 1)[-1] in BUILTIN_ROLES.values(), grant.name
        assert not scope.startswith(rg_scope) and scope != f"/subscriptions/{SUBSCRIPTION}", grant.name


def test_endpoints_read_only_the_endpoint_secret(prod: Recording) -> None:
    scopes = {g.inputs["scope"] for g in prod.of_type("azure-native:authorization:RoleAssignment")
              if g.name.startswith(("iris-secret", "churn-secret"))}
    assert scopes == {"secrets-endpointApiKey-id"}


def test_stack_outputs(prod: Recording) -> None:
    out = PlatformOutputs.from_exports(resolve(prod.result.exports()), stack="prod")
    assert (out.cloud, out.environment) == ("azure", "prod")
    assert out.target["region"] == "westeurope"
    assert out.target["resourceGroupName"] == "shipway-prod"
    assert out.tracking_uri == "azureml://westeurope.api.azureml.ms/mlflow/v1.0/tracking-workspace"
    assert {m: e.version for m, e in out.endpoints.items()} == {"churn": 7, "iris": 4}
    iris = out.target["endpointNames"]["iris"]
    assert out.endpoints["iris"].status == f"azureml:shipway-prod/tracking-workspace/{iris}"
    assert out.target["deployments"] == {"churn": ["v7"], "iris": ["v4", "v3"]}
    assert out.target["traffic"] == {"churn": {"v7": 100}, "iris": {"v4": 0, "v3": 100}}
    assert out.target["deployClientId"] == "deploy-identity-client"
    assert out.observability.dashboards_url == "https://observability-grafana.grafana.azure.com"
    assert out.target["keyVaultUri"] == "https://mock-kv-secrets-8623f01d.vault.azure.net/"


def test_collector_config_is_the_generated_azure_monitor_pipeline_without_the_connection_string(
        prod: Recording) -> None:
    import json

    from shipway_core.observability.collector import azure_monitor_collector_config

    out = PlatformOutputs.from_exports(resolve(prod.result.exports()), stack="prod")
    config = json.loads(out.target["collectorConfig"])
    assert config == azure_monitor_collector_config("prod")
    assert config["exporters"] == {
        "azuremonitor": {"connection_string": "${env:APPLICATIONINSIGHTS_CONNECTION_STRING}"}}
    assert "InstrumentationKey" not in out.target["collectorConfig"]


def test_existing_resource_group_is_used_not_created() -> None:
    raw = {**RAW, "azure": {"resourceGroupName": "rg-ml-prod"}}
    rec = _record(raw)
    assert rec.of_type("azure-native:resources:ResourceGroup") == []
    assert {r.inputs["resourceGroupName"] for r in rec.of_type("azure-native:storage:StorageAccount")} == {
        "rg-ml-prod"}
    assert rec.of_type("shipway:azure:DeployIdentity") == []  # no repository configured
    assert resolve(rec.result.target["deployClientId"]) is None
    assert rec.of_type("azure-native:dashboard:Grafana") == []


def _cfg(**azure: Any) -> StackConfig:
    return example_config("prod", {**RAW, "azure": azure})


def test_previous_version_for_an_unpinned_model_is_rejected() -> None:
    with pytest.raises(ValueError) as err:
        build_platform(_cfg(previousVersions={"fraud": 2}), {})
    assert str(err.value) == (
        "azure.previousVersions: ['fraud'] are not valid; allowed: models pinned in this stack (churn, iris)")


def test_other_clouds_are_rejected() -> None:
    cfg = example_config("prod", {**RAW, "cloud": "kubernetes", "region": None, "azure": {}})
    with pytest.raises(ValueError) as err:
        build_platform(cfg, {})
    assert str(err.value) == "cloud: 'kubernetes' is not valid; the Azure platform needs 'azure'"
