"""DeployIdentity: GitHub OIDC federation and promotion-only roles, never Owner/Contributor."""

from __future__ import annotations

import pytest

from components.azure import AzureTarget, DeployIdentity, DeployIdentityArgs
from components.azure._shared import FORBIDDEN_ROLES
from components.azure.identity import deploy_permissions
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, record_azure

TARGET = AzureTarget("rg-shipway", "westeurope")
RG_ID = "/subscriptions/00000000-0000-0000-0000-000000000003/resourceGroups/rg-shipway"
REG_RG = "/subscriptions/00000000-0000-0000-0000-000000000003/resourceGroups/rg-models"
REG_ID = f"{REG_RG}/providers/Microsoft.MachineLearningServices/registries/shipway-models"
TYPES = ["azure-native:machinelearningservices:OnlineDeployment", "azure-native:monitor:AutoscaleSetting",
         "azure-native:managedidentity:UserAssignedIdentity"]


@pytest.fixture(scope="module")
def rec() -> Recording:
    args = DeployIdentityArgs("prod", TAGS, "acme/shipway", workspace_id="ws-id", resource_group_id=RG_ID,
                              resource_types=TYPES, model_registry_id=REG_ID, model_registry_group_id=REG_RG)
    return record_azure(lambda: DeployIdentity("deploy", args, TARGET))


def test_children(rec: Recording) -> None:
    assert sorted((r.type, r.name) for r in rec.resources) == [
        ("azure-native:authorization:RoleAssignment", "deploy-deployer"),
        ("azure-native:authorization:RoleAssignment", "deploy-registry-reader"),
        ("azure-native:authorization:RoleDefinition", "deploy-deployer-role"),
        ("azure-native:authorization:RoleDefinition", "deploy-registry-reader-role"),
        ("azure-native:managedidentity:FederatedIdentityCredential", "deploy-github"),
        ("azure-native:managedidentity:UserAssignedIdentity", "deploy-identity"),
        ("shipway:azure:DeployIdentity", "deploy"),
    ]


def test_federation_trusts_one_repository_environment(rec: Recording) -> None:
    cred = rec.one("azure-native:managedidentity:FederatedIdentityCredential").inputs
    assert cred == {
        "resourceGroupName": "rg-shipway",
        "resourceName": "deploy-identity",
        "federatedIdentityCredentialResourceName": "github-prod",
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:acme/shipway:environment:prod",
        "audiences": ["api://AzureADTokenExchange"],
    }
    assert resolve(rec.result.subject) == "repo:acme/shipway:environment:prod"
    assert resolve(rec.result.client_id) == "deploy-identity-client"


def test_roles_are_derived_from_the_stacks_resources(rec: Recording) -> None:
    role = rec.one("azure-native:authorization:RoleDefinition", "deploy-deployer-role").inputs
    assert role["roleType"] == "CustomRole"
    assert role["assignableScopes"] == [RG_ID]
    assert role["permissions"] == [{"actions": [
        "Microsoft.Insights/autoscalesettings/delete",
        "Microsoft.Insights/autoscalesettings/read",
        "Microsoft.Insights/autoscalesettings/write",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/delete",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read",
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write",
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        "Microsoft.Resources/subscriptions/resourceGroups/read",
    ], "notActions": [], "dataActions": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"],
        "notDataActions": []}]
    deployer = rec.one("azure-native:authorization:RoleAssignment", "deploy-deployer").inputs
    assert (deployer["roleDefinitionId"], deployer["scope"]) == ("deploy-deployer-role-id", RG_ID)
    reader = rec.one("azure-native:authorization:RoleDefinition", "deploy-registry-reader-role").inputs
    assert reader["permissions"] == [{"actions": ["Microsoft.MachineLearningServices/registries/read",
                                                  "Microsoft.MachineLearningServices/registries/assets/read"],
                                      "notActions": []}]
    assert reader["assignableScopes"] == [REG_RG]
    grant = rec.one("azure-native:authorization:RoleAssignment", "deploy-registry-reader").inputs
    assert (grant["roleDefinitionId"], grant["scope"]) == ("deploy-registry-reader-role-id", REG_ID)
    used = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1]
            for r in rec.of_type("azure-native:authorization:RoleAssignment")}
    assert not used & set(FORBIDDEN_ROLES.values())


def test_key_auth_lists_keys_instead_of_the_score_data_action() -> None:
    actions, data = deploy_permissions(["azure-native:machinelearningservices:OnlineEndpoint"], "Key")
    assert "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/listKeys/action" in actions
    assert data == []
    assert not any("*" in a for a in actions)


@pytest.mark.parametrize("repo", ["acme", "acme/shipway/extra", "", "acme/ship way"])
def test_repository_must_be_owner_slash_name(repo: str) -> None:
    args = DeployIdentityArgs("prod", TAGS, repo, workspace_id="ws", resource_group_id="rg")
    with pytest.raises(ValueError) as err:
        DeployIdentity("deploy", args, TARGET)
    assert str(err.value) == f"github_repository: {repo!r} is not valid; use owner/name"
