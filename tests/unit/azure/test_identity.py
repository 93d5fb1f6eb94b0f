"""DeployIdentity: GitHub OIDC federation and promotion-only roles, never Owner/Contributor."""

from __future__ import annotations

import pytest

from components.azure import AzureTarget, DeployIdentity, DeployIdentityArgs
from components.azure._shared import FORBIDDEN_ROLES
from components.azure.identity import DEPLOYER_ACTIONS
from tests.support.recording import Recording, resolve
from tests.unit.azure.provider import TAGS, record_azure, role_id

TARGET = AzureTarget("rg-shipway", "westeurope")
RG_ID = "/subscriptions/00000000-0000-0000-0000-000000000003/resourceGroups/rg-shipway"


@pytest.fixture(scope="module")
def rec() -> Recording:
    args = DeployIdentityArgs("prod", TAGS, "acme/shipway", workspace_id="ws-id", resource_group_id=RG_ID)
    return record_azure(lambda: DeployIdentity("deploy", args, TARGET))


def test_children(rec: Recording) -> None:
    assert sorted((r.type, r.name) for r in rec.resources) == [
        ("azure-native:authorization:RoleAssignment", "deploy-deployer"),
        ("azure-native:authorization:RoleAssignment", "deploy-ml-data-scientist"),
        ("azure-native:authorization:RoleDefinition", "deploy-deployer-role"),
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


def test_roles_are_promotion_only(rec: Recording) -> None:
    ml = rec.one("azure-native:authorization:RoleAssignment", "deploy-ml-data-scientist").inputs
    assert ml["roleDefinitionId"] == role_id("f6c7c914-8db3-469d-8ca1-694a8f32e121")
    assert ml["scope"] == "ws-id"
    role = rec.one("azure-native:authorization:RoleDefinition").inputs
    assert role["roleType"] == "CustomRole"
    assert role["assignableScopes"] == [RG_ID]
    assert role["permissions"] == [{"actions": list(DEPLOYER_ACTIONS), "notActions": []}]
    assert not any("*" in action for action in DEPLOYER_ACTIONS)
    deployer = rec.one("azure-native:authorization:RoleAssignment", "deploy-deployer").inputs
    assert (deployer["roleDefinitionId"], deployer["scope"]) == ("deploy-deployer-role-id", RG_ID)
    used = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1]
            for r in rec.of_type("azure-native:authorization:RoleAssignment")}
    assert not used & set(FORBIDDEN_ROLES.values())


@pytest.mark.parametrize("repo", ["acme", "acme/shipway/extra", "", "acme/ship way"])
def test_repository_must_be_owner_slash_name(repo: str) -> None:
    args = DeployIdentityArgs("prod", TAGS, repo, workspace_id="ws", resource_group_id="rg")
    with pytest.raises(ValueError) as err:
        DeployIdentity("deploy", args, TARGET)
    assert str(err.value) == f"github_repository: {repo!r} is not valid; use owner/name"
