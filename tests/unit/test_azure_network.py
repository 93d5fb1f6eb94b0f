"""Azure private networking and the shared model registry, recorded under Pulumi mocks.

What a test/prod stack must get: a VNet, one private endpoint per service with the right
private-link group id, the private DNS zones those group ids resolve through, each zone linked
to the VNet, everything public-access-off; deployments pinning the shared registry's asset id.
"""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pytest

from components.azure.network import PRIVATE_DNS_ZONES, PrivateNetworkArgs, PrivateTarget, validate_network
from components.azure.platform import build_platform
from components.azure.registry import registry_model_uri
from shipway_core.config import StackConfigError
from tests.support.recording import Recording
from tests.support.stacks import AZURE_SUBSCRIPTION, example_config
from tests.unit.azure.provider import PROD_RAW, TAGS, record_azure

PE = "azure-native:network:PrivateEndpoint"
ZONE = "azure-native:privatedns:PrivateZone"
LINK = "azure-native:privatedns:VirtualNetworkLink"
ZONE_GROUP = "azure-native:network:PrivateDnsZoneGroup"
REGISTRY = "azure-native:machinelearningservices:Registry"


def _record(env: str, **azure: Any) -> Recording:
    """One recording per (environment, azure settings) for the whole module: tests only read it."""
    return _recorded(env, tuple(sorted(azure.items())))


@functools.cache
def _recorded(env: str, azure_items: tuple[tuple[str, Any], ...]) -> Recording:
    azure = dict(azure_items)
    raw = {**PROD_RAW, "environment": env, "azure": {**PROD_RAW["azure"], **azure}}
    if env != "prod":
        raw["models"] = {"iris": {"version": 4, "instances": 1}, "churn": {"version": 7, "instances": 1}}
    cfg = example_config(env, raw)
    secrets = {"endpointApiKey": pulumi.Output.secret("k")}
    return record_azure(lambda: build_platform(cfg, secrets), stack=env)


@pytest.fixture(scope="module")
def prod() -> Recording:
    return _record("prod")


def test_private_network_children(prod: Recording) -> None:
    vnet = prod.one("azure-native:network:VirtualNetwork").inputs
    assert vnet["virtualNetworkName"] == "shipway-prod-vnet"
    assert vnet["addressSpace"] == {"addressPrefixes": ["10.60.0.0/16"]}
    subnet = prod.one("azure-native:network:Subnet").inputs
    assert (subnet["subnetName"], subnet["addressPrefix"]) == ("private-endpoints", "10.60.1.0/24")
    assert subnet["defaultOutboundAccess"] is False
    assert subnet["privateEndpointNetworkPolicies"] == "Enabled"
    assert prod.names(PE) == ["network-container-registry", "network-model-registry", "network-secrets-vault",
                              "network-storage-blob", "network-workspace", "network-workspace-vault"]


def test_private_endpoint_group_ids_and_targets(prod: Recording) -> None:
    def conn(name: str) -> tuple[list[str], str]:
        (c,) = prod.one(PE, name).inputs["privateLinkServiceConnections"]
        return c["groupIds"], c["privateLinkServiceId"]

    registry_id = (f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/shipway-prod/providers/"
                   "Microsoft.MachineLearningServices/registries/shipway-models")
    assert conn("network-model-registry") == (["amlregistry"], registry_id)
    assert conn("network-workspace")[0] == ["amlworkspace"]
    assert conn("network-storage-blob")[0] == ["blob"]
    assert conn("network-workspace-vault")[0] == ["vault"]
    assert conn("network-secrets-vault")[0] == ["vault"]
    assert conn("network-container-registry")[0] == ["registry"]
    for res in prod.of_type(PE):
        assert res.inputs["subnet"]["id"] == "network-endpoints-id", res.name


def test_dns_zones_linked_to_the_vnet(prod: Recording) -> None:
    zones = sorted(r.inputs["privateZoneName"] for r in prod.of_type(ZONE))
    assert zones == ["privatelink.api.azureml.ms", "privatelink.azurecr.io", "privatelink.blob.core.windows.net",
                     "privatelink.notebooks.azure.net", "privatelink.vaultcore.azure.net"]
    links = {r.inputs["privateZoneName"]: r.inputs for r in prod.of_type(LINK)}
    assert sorted(links) == zones
    for link in links.values():
        assert link["virtualNetwork"] == {"id": "network-vnet-id"}
        assert link["registrationEnabled"] is False
    group = prod.one(ZONE_GROUP, "network-workspace-dns").inputs
    assert group["privateEndpointName"] == "shipway-prod-workspace"
    assert [c["privateDnsZoneId"] for c in group["privateDnsZoneConfigs"]] == [
        "network-api-azureml-ms-id", "network-notebooks-azure-net-id"]
    assert [c["privateDnsZoneId"] for c in prod.one(ZONE_GROUP, "network-secrets-vault-dns")
            .inputs["privateDnsZoneConfigs"]] == ["network-vaultcore-azure-net-id"]


@pytest.mark.parametrize("env", ["test", "prod"])
def test_public_network_access_is_off_in_test_and_prod(env: str) -> None:
    rec = _record(env)
    ws = rec.one("azure-native:machinelearningservices:Workspace").inputs
    assert ws["publicNetworkAccess"] == "Disabled"
    for res in rec.of_type("azure-native:machinelearningservices:OnlineEndpoint"):
        assert res.inputs["properties"]["publicNetworkAccess"] == "Disabled", res.name
    for res in rec.of_type("azure-native:machinelearningservices:OnlineDeployment"):
        assert res.inputs["properties"]["egressPublicNetworkAccess"] == "Disabled", res.name
    assert rec.one("azure-native:storage:StorageAccount").inputs["publicNetworkAccess"] == "Disabled"
    assert len(rec.of_type(PE)) == 6


def test_public_access_is_a_dev_only_option() -> None:
    dev = _record("dev", publicNetworkAccess=True)
    assert dev.of_type("azure-native:network:VirtualNetwork") == []
    assert dev.of_type(PE) == []
    with pytest.raises(StackConfigError) as err:
        example_config("test", {**PROD_RAW, "environment": "test", "azure": {"publicNetworkAccess": True}})
    assert ("shipway:azure.publicNetworkAccess: true is not valid; test is reachable only through private endpoints; "
            "remove it (public access is a dev-only option)") in str(err.value)


def test_deployments_pin_the_shared_registry_in_every_environment() -> None:
    models = {env: {r.inputs["deploymentName"]: r.inputs["properties"]["model"]
                    for r in _record(env).of_type("azure-native:machinelearningservices:OnlineDeployment")
                    if r.name.startswith("iris")}
              for env in ("dev", "prod")}
    assert models["dev"]["v4"] == models["prod"]["v4"] == "azureml://registries/shipway-models/models/iris/versions/4"


def test_the_owning_stack_creates_a_private_protected_registry() -> None:
    rec = _record("dev", createRegistry=True)
    reg = rec.one(REGISTRY)
    assert reg.name == "models-registry"
    assert reg.inputs["registryName"] == "shipway-models"
    assert reg.inputs["publicNetworkAccess"] == "Disabled"
    assert reg.inputs["identity"] == {"type": "SystemAssigned"}
    (region,) = reg.inputs["regionDetails"]
    assert region["location"] == "westeurope"
    assert region["storageAccountDetails"][0]["systemCreatedStorageAccount"]["allowBlobPublicAccess"] is False
    assert region["acrDetails"][0]["systemCreatedAcrAccount"]["acrAccountSku"] == "Premium"
    (pe,) = [r for r in rec.of_type(PE) if r.name == "network-model-registry"]
    assert pe.inputs["privateLinkServiceConnections"][0]["privateLinkServiceId"] == "models-registry-id"
    assert _record("prod").of_type(REGISTRY) == []  # other stacks only name it


@pytest.mark.parametrize(("args", "message"), [
    (PrivateNetworkArgs("prod", TAGS, address_space="10.60.0.0"),
     "endpoint_subnet: '10.60.1.0/24' is not valid; use a CIDR inside address_space 10.60.0.0"),
    (PrivateNetworkArgs("prod", TAGS, address_space="10.0.0.0/33"),
     "address_space: '10.0.0.0/33' is not valid; use an IPv4 CIDR such as 10.60.0.0/16"),
    (PrivateNetworkArgs("prod", TAGS, endpoint_subnet="10.61.0.0/24"),
     "endpoint_subnet: '10.61.0.0/24' is not valid; use a CIDR inside address_space 10.60.0.0/16"),
    (PrivateNetworkArgs("prod", TAGS, targets={"x": PrivateTarget("id", "sqlServer")}),
     f"targets.x.group_id: 'sqlServer' is not valid; allowed: {', '.join(sorted(PRIVATE_DNS_ZONES))}"),
])
def test_network_validation(args: PrivateNetworkArgs, message: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_network(args)
    assert str(err.value) == message


def test_registry_model_uri_validates_its_parts() -> None:
    assert registry_model_uri("shipway-models", "iris", 4) == "azureml://registries/shipway-models/models/iris/versions/4"
    with pytest.raises(ValueError) as err:
        registry_model_uri("a", "iris", 4)
    assert str(err.value).startswith("registry_name: 'a' is not valid; use 3-33 letters")


def test_the_workspace_managed_network_may_reach_the_shared_registry(prod: Recording) -> None:
    rule = prod.one("azure-native:machinelearningservices:ManagedNetworkSettingsRule").inputs
    registry_id = (f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/shipway-prod/providers/"
                   "Microsoft.MachineLearningServices/registries/shipway-models")
    assert rule["ruleName"] == "shared-model-registry"
    assert rule["properties"] == {"type": "PrivateEndpoint", "category": "UserDefined", "destination": {
        "serviceResourceId": registry_id, "subresourceTarget": "amlregistry", "sparkEnabled": False}}
