"""TrackingServer on Azure: exact children and every security-relevant input."""

from __future__ import annotations

import dataclasses

import pytest

from components.azure import AzureTarget, TrackingServer
from components.common import TrackingServerArgs
from shipway_core.config import AzureSettings
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, record_azure, role_id

PRIVATE = AzureTarget("rg-shipway", "westeurope")


def _record(environment: str = "prod", target: AzureTarget = PRIVATE, protect: bool = True) -> Recording:
    tags = {**TAGS, "environment": environment}
    args = TrackingServerArgs(environment, tags, protect)
    return record_azure(lambda: TrackingServer("tracking", args, target))


@pytest.fixture(scope="module")
def prod() -> Recording:
    return _record()


def test_children_are_exactly_the_workspace_and_its_dependencies(prod: Recording) -> None:
    assert sorted((r.type, r.name) for r in prod.resources) == [
        ("azure-native:applicationinsights:Component", "tracking-insights"),
        ("azure-native:authorization:RoleAssignment", "tracking-cmk-crypto-user"),
        ("azure-native:authorization:RoleAssignment", "tracking-registry-push"),
        ("azure-native:authorization:RoleAssignment", "tracking-storage-blob-contributor"),
        ("azure-native:authorization:RoleAssignment", "tracking-vault-secrets-officer"),
        ("azure-native:authorization:RoleAssignment", "tracking-workspace-cmk-crypto-user"),
        ("azure-native:containerregistry:Registry", "tracking-registry"),
        ("azure-native:keyvault:Key", "tracking-cmk"),
        ("azure-native:keyvault:Key", "tracking-workspace-cmk"),
        ("azure-native:keyvault:Vault", "tracking-vault"),
        ("azure-native:machinelearningservices:Workspace", "tracking-workspace"),
        ("azure-native:managedidentity:UserAssignedIdentity", "tracking-identity"),
        ("azure-native:operationalinsights:Workspace", "tracking-logs"),
        ("azure-native:storage:BlobServiceProperties", "tracking-blob-service"),
        ("azure-native:storage:StorageAccount", "tracking-storage"),
        ("shipway:azure:TrackingServer", "tracking"),
    ]


def test_customer_managed_key_rotates_and_only_wraps(prod: Recording) -> None:
    key = prod.one("azure-native:keyvault:Key", "tracking-cmk").inputs
    assert key["keyName"] == "artifacts-cmk"
    assert key["vaultName"] == "kv-tracking-64c44874"
    assert key["properties"]["kty"] == "RSA"
    assert key["properties"]["keySize"] == 3072
    assert key["properties"]["keyOps"] == ["wrapKey", "unwrapKey"]
    assert key["properties"]["rotationPolicy"]["lifetimeActions"] == [
        {"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "rotate"}},
        {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "notify"}},
    ]
    # The workspace key is versioned into the workspace: notify, never rotate automatically.
    workspace_key = prod.one("azure-native:keyvault:Key", "tracking-workspace-cmk").inputs
    assert workspace_key["keyName"] == "workspace-cmk"
    assert workspace_key["properties"]["keyOps"] == ["wrapKey", "unwrapKey"]
    assert workspace_key["properties"]["rotationPolicy"]["lifetimeActions"] == [
        {"trigger": {"timeBeforeExpiry": "P60D"}, "action": {"type": "notify"}}]


def test_storage_account_is_private_encrypted_tls12_and_keyless(prod: Recording) -> None:
    storage = prod.one("azure-native:storage:StorageAccount").inputs
    assert storage["accountName"] == "sttracking64c44874"
    assert storage["allowBlobPublicAccess"] is False
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowCrossTenantReplication"] is False
    assert storage["defaultToOAuthAuthentication"] is True
    assert storage["enableHttpsTrafficOnly"] is True
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["publicNetworkAccess"] == "Disabled"
    assert storage["networkRuleSet"] == {"defaultAction": "Deny", "bypass": "AzureServices"}
    assert storage["identity"] == {"type": "UserAssigned", "userAssignedIdentities": ["tracking-identity-id"]}
    assert storage["encryption"] == {
        "keySource": "Microsoft.Keyvault",
        "keyVaultProperties": {"keyVaultUri": "https://mock-kv-tracking-64c44874.vault.azure.net/",
                               "keyName": "artifacts-cmk"},
        "encryptionIdentity": {"encryptionUserAssignedIdentity": "tracking-identity-id"},
        "requireInfrastructureEncryption": True,
        "services": {"blob": {"enabled": True, "keyType": "Account"},
                     "file": {"enabled": True, "keyType": "Account"}},
    }
    assert storage["sku"] == {"name": "Standard_ZRS"}
    assert storage["tags"] == TAGS


def test_blob_soft_delete_and_versioning(prod: Recording) -> None:
    blob = prod.one("azure-native:storage:BlobServiceProperties").inputs
    assert blob["accountName"] == "sttracking64c44874"
    assert blob["blobServicesName"] == "default"
    assert blob["isVersioningEnabled"] is True
    assert blob["deleteRetentionPolicy"] == {"enabled": True, "days": 30}
    assert blob["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 30}


def test_vault_is_rbac_mode_with_purge_protection(prod: Recording) -> None:
    vault = prod.one("azure-native:keyvault:Vault").inputs
    assert vault["vaultName"] == "kv-tracking-64c44874"
    props = vault["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert props["enableSoftDelete"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert props["publicNetworkAccess"] == "Disabled"
    assert props["networkAcls"] == {"defaultAction": "Deny", "bypass": "AzureServices"}
    assert props["tenantId"] == "00000000-0000-0000-0000-000000000004"
    assert "accessPolicies" not in props
    assert vault["tags"] == TAGS


def test_registry_has_no_admin_user_and_no_public_access(prod: Recording) -> None:
    acr = prod.one("azure-native:containerregistry:Registry").inputs
    assert acr["registryName"] == "crtracking64c44874"
    assert acr["adminUserEnabled"] is False
    assert acr["anonymousPullEnabled"] is False
    assert acr["publicNetworkAccess"] == "Disabled"
    assert acr["sku"] == {"name": "Premium"}


def test_logs_and_insights_are_private_and_aad_only(prod: Recording) -> None:
    logs = prod.one("azure-native:operationalinsights:Workspace").inputs
    assert logs["retentionInDays"] == 365
    assert logs["publicNetworkAccessForIngestion"] == "Disabled"
    assert logs["publicNetworkAccessForQuery"] == "Disabled"
    assert logs["features"] == {"disableLocalAuth": True}
    insights = prod.one("azure-native:applicationinsights:Component").inputs
    assert insights["workspaceResourceId"] == "tracking-logs-id"
    assert insights["ingestionMode"] == "LogAnalytics"
    assert insights["disableLocalAuth"] is True
    assert insights["publicNetworkAccessForIngestion"] == "Disabled"


def test_workspace_wires_dependencies_and_is_private(prod: Recording) -> None:
    ws = prod.one("azure-native:machinelearningservices:Workspace").inputs
    assert ws["storageAccount"] == "tracking-storage-id"
    assert ws["keyVault"] == "tracking-vault-id"
    assert ws["applicationInsights"] == "tracking-insights-id"
    assert ws["containerRegistry"] == "tracking-registry-id"
    assert ws["identity"] == {"type": "UserAssigned", "userAssignedIdentities": ["tracking-identity-id"]}
    assert ws["primaryUserAssignedIdentity"] == "tracking-identity-id"
    assert ws["systemDatastoresAuthMode"] == "Identity"
    assert ws["publicNetworkAccess"] == "Disabled"
    assert ws["managedNetwork"] == {"isolationMode": "AllowOnlyApprovedOutbound"}
    assert ws["hbiWorkspace"] is True  # confidential data
    assert ws["encryption"] == {
        "status": "Enabled",
        "keyVaultProperties": {
            "keyVaultArmId": "tracking-vault-id",
            "keyIdentifier": "https://mock-kv-tracking-64c44874.vault.azure.net/keys/workspace-cmk/0123456789abcdef",
        },
        "identity": {"userAssignedIdentity": "tracking-identity-id"},
    }
    assert ws["tags"] == TAGS


def test_workspace_identity_roles_are_scoped_to_each_resource(prod: Recording) -> None:
    grants = {r.name: r.inputs for r in prod.of_type("azure-native:authorization:RoleAssignment")}
    expected = {
        "tracking-storage-blob-contributor": ("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "tracking-storage-id"),
        "tracking-vault-secrets-officer": ("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "tracking-vault-id"),
        "tracking-registry-push": ("8311e382-0749-4cb8-b61a-304f252e45ec", "tracking-registry-id"),
        "tracking-cmk-crypto-user": ("e147488a-f6f5-4113-8e2d-b22465e65bf6", "tracking-cmk-id"),
        "tracking-workspace-cmk-crypto-user": ("e147488a-f6f5-4113-8e2d-b22465e65bf6",
                                               "tracking-workspace-cmk-id"),
    }
    assert set(grants) == set(expected)
    for name, (guid, scope) in expected.items():
        assert grants[name]["roleDefinitionId"] == role_id(guid)
        assert grants[name]["scope"] == scope
        assert grants[name]["principalId"] == "tracking-identity-principal"
        assert grants[name]["principalType"] == "ServicePrincipal"


def test_outputs_expose_mlflow_uri_and_ids(prod: Recording) -> None:
    server = prod.result
    assert resolve(server.tracking_uri) == "azureml://westeurope.api.azureml.ms/mlflow/v1.0/tracking-workspace"
    assert resolve(server.registry_uri) == resolve(server.tracking_uri)
    assert resolve(server.log_analytics_workspace_id) == "tracking-logs-id"
    assert resolve(server.container_registry_id) == "tracking-registry-id"


def test_registry_data_is_protected_and_retained_when_asked(prod: Recording) -> None:
    server = prod.result
    for resource in (server.workspace, server.storage, server.vault, server.key, server.workspace_key):
        assert resource._protect is True  # what the engine receives as the `protect` option
    dev = _record("dev", protect=False).result
    assert dev.workspace._protect is False


def test_public_access_is_opt_in_and_dev_is_cheaper() -> None:
    public = AzureTarget("rg", "westeurope", dataclasses.replace(AzureSettings(), public_network_access=True))
    rec = _record("dev", public, protect=False)
    assert rec.one("azure-native:storage:StorageAccount").inputs["publicNetworkAccess"] == "Enabled"
    assert rec.one("azure-native:storage:StorageAccount").inputs["sku"] == {"name": "Standard_LRS"}
    assert rec.one("azure-native:storage:StorageAccount").inputs["allowBlobPublicAccess"] is False
    assert rec.one("azure-native:containerregistry:Registry").inputs["sku"] == {"name": "Standard"}
    assert rec.one("azure-native:machinelearningservices:Workspace").inputs["managedNetwork"] == {
        "isolationMode": "AllowInternetOutbound"}
    assert rec.one("azure-native:keyvault:Vault").inputs["properties"]["enablePurgeProtection"] is True
    assert rec.one("azure-native:storage:BlobServiceProperties").inputs["deleteRetentionPolicy"] == {
        "enabled": True, "days": 7}


def test_missing_tags_fail_before_anything_is_created() -> None:
    with pytest.raises(ValueError) as err:
        TrackingServer("tracking", TrackingServerArgs("prod", {"owner": "ml-team"}), PRIVATE)
    assert str(err.value) == (
        "tags: missing cost-center, environment, data-classification; every Shipway resource carries "
        "owner, cost-center, environment, data-classification"
    )
