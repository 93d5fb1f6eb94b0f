"""The identity GitHub Actions deploys (promotes) with: OIDC federation, no stored secret."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, client_config, grant
from components.common import validate_tags

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

# What a promotion `pulumi up` needs beyond the workspace: running the ARM template that sets
# the endpoint traffic map. No built-in role is narrower than Contributor here, so a custom
# role with exactly these actions is defined, assignable only in this resource group.
DEPLOYER_ACTIONS = (
    "Microsoft.Resources/deployments/read",
    "Microsoft.Resources/deployments/write",
    "Microsoft.Resources/deployments/validate/action",
    "Microsoft.Resources/deployments/operationStatuses/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
)


def validate_github_repository(repository: str) -> None:
    """Federation trusts exactly one repository, spelled owner/name."""
    if not isinstance(repository, str) or not _REPOSITORY.match(repository):
        raise ValueError(f"github_repository: {repository!r} is not valid; use owner/name")


def github_subject(repository: str, environment: str) -> str:
    """Only jobs bound to the GitHub environment of the same name may assume the identity,
    so environment protection rules (reviewers, branch limits) gate every deploy."""
    return f"repo:{repository}:environment:{environment}"


@dataclass
class DeployIdentityArgs:
    """Who may deploy an environment from CI, and the resources that deploy touches."""

    environment: str
    tags: Mapping[str, str]
    github_repository: str
    workspace_id: pulumi.Input[str]
    resource_group_id: pulumi.Input[str]


class DeployIdentity(pulumi.ComponentResource):
    """A user-assigned identity with a GitHub OIDC federated credential and promotion-only roles.

    Roles: *AzureML Data Scientist* on the workspace (create online deployments, move traffic)
    and the custom ``-deployer`` role on the resource group (ARM template deployments only).
    It can neither create infrastructure nor grant roles: first deploys and infrastructure
    changes are run by an administrator (see docs/targets/azure.md).
    """

    client_id: pulumi.Output[str]
    """Client id GitHub's ``azure/login`` uses (not a secret)."""
    principal_id: pulumi.Output[str]
    """Object id of the identity's service principal."""
    subject: pulumi.Output[str]
    """The only OIDC subject the identity trusts."""

    def __init__(self, name: str, args: DeployIdentityArgs, target: AzureTarget,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        validate_github_repository(args.github_repository)
        super().__init__("shipway:azure:DeployIdentity", name, None, opts)
        tags = dict(args.tags)
        sub = client_config(self).subscription_id
        subject = github_subject(args.github_repository, args.environment)

        self.identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=target.resource_group_name,
            location=target.location, tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.federation = azure_native.managedidentity.FederatedIdentityCredential(
            f"{name}-github",
            resource_group_name=target.resource_group_name,
            resource_name_=self.identity.name,
            federated_identity_credential_resource_name=f"github-{args.environment}",
            issuer=GITHUB_ISSUER,
            subject=subject,
            audiences=[GITHUB_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.workspace_grant = grant(
            f"{name}-ml-data-scientist", principal_id=self.identity.principal_id,
            role="AzureML Data Scientist", scope=args.workspace_id, subscription_id=sub, parent=self)
        self.deployer_role = azure_native.authorization.RoleDefinition(
            f"{name}-deployer-role",
            role_name=f"Shipway template deployer ({args.environment})",
            description="Run ARM template deployments (endpoint traffic shifts) in one resource group.",
            role_type="CustomRole",
            scope=args.resource_group_id,
            assignable_scopes=[args.resource_group_id],
            permissions=[{"actions": list(DEPLOYER_ACTIONS), "not_actions": []}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.deployer_grant = azure_native.authorization.RoleAssignment(
            f"{name}-deployer",
            principal_id=self.identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=self.deployer_role.id,
            scope=args.resource_group_id,
            description="shipway: template deployer",
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.client_id = self.identity.client_id
        self.principal_id = self.identity.principal_id
        self.subject = pulumi.Output.from_input(subject)
        self.register_outputs({
            "client_id": self.client_id,
            "principal_id": self.principal_id,
            "subject": self.subject,
        })
