"""The identity GitHub Actions deploys (promotes) with: OIDC federation, no stored secret."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget
from components.common import validate_tags

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

_WS = "Microsoft.MachineLearningServices/workspaces"
_RESOURCE_DEPLOYMENTS = (
    "Microsoft.Resources/deployments/read",
    "Microsoft.Resources/deployments/write",
    "Microsoft.Resources/deployments/validate/action",
    "Microsoft.Resources/deployments/operationStatuses/read",
)
# What a promotion does to each resource type the stack creates, as ARM actions: `pulumi up`
# of a pin change (create the new deployment and its autoscale setting, assign the endpoint's
# user-assigned identity to it, run the traffic template, delete the old deployment) and the
# Azure target adapter (read the endpoint, move traffic, read the guardrail alerts). The deploy
# role is the union over the types the stack actually created: nothing the stack does not have.
PROMOTION_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "azure-native:machinelearningservices:Workspace": (f"{_WS}/read",),
    "azure-native:machinelearningservices:OnlineEndpoint": (
        f"{_WS}/onlineEndpoints/read", f"{_WS}/onlineEndpoints/write"),
    "azure-native:machinelearningservices:OnlineDeployment": (
        f"{_WS}/onlineEndpoints/deployments/read", f"{_WS}/onlineEndpoints/deployments/write",
        f"{_WS}/onlineEndpoints/deployments/delete"),
    "azure-native:monitor:AutoscaleSetting": (
        "Microsoft.Insights/autoscalesettings/read", "Microsoft.Insights/autoscalesettings/write",
        "Microsoft.Insights/autoscalesettings/delete"),
    "azure-native:resources:Deployment": _RESOURCE_DEPLOYMENTS,
    # A deployment runs as the endpoint's user-assigned identity: assigning it needs assign/action.
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"),
    # The rollback decision and the traffic shift read whether the stack's guardrail alerts fired.
    "azure-native:monitor:MetricAlert": ("Microsoft.AlertsManagement/alerts/read",),
    "azure-native:monitor:ScheduledQueryRule": ("Microsoft.AlertsManagement/alerts/read",),
}
# Every promotion reads the resource group (template deployments are scoped to it).
BASE_ACTIONS = ("Microsoft.Resources/subscriptions/resourceGroups/read",)
# Verification calls the scoring URI: with Key auth it fetches the endpoint key first; with
# AADToken auth its Entra token needs the score data action instead.
KEY_AUTH_ACTIONS = (f"{_WS}/onlineEndpoints/listKeys/action",)
AAD_SCORE_DATA_ACTIONS = (f"{_WS}/onlineEndpoints/score/action",)
# On the shared registry: read the pinned version (pre-flight), never write it.
REGISTRY_READ_ACTIONS = (
    "Microsoft.MachineLearningServices/registries/read",
    "Microsoft.MachineLearningServices/registries/assets/read",
)


def deploy_permissions(resource_types: Iterable[str], auth_mode: str) -> tuple[list[str], list[str]]:
    """(actions, data actions) the deploy identity needs on its resource group, derived from the
    resource types the stack created; a type promotion never touches adds nothing."""
    actions = set(BASE_ACTIONS)
    for typ in resource_types:
        actions.update(PROMOTION_ACTIONS.get(typ, ()))
    if auth_mode == "Key":
        actions.update(KEY_AUTH_ACTIONS)
        return sorted(actions), []
    return sorted(actions), list(AAD_SCORE_DATA_ACTIONS)


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
    # azure-native type tokens of the resources the stack created (deploy_permissions derives the
    # role from them) and the endpoint auth mode verification uses.
    resource_types: Sequence[str] = ()
    auth_mode: str = "AADToken"
    # The shared registry: its ARM id (assignment scope) and resource group id (role scope).
    model_registry_id: pulumi.Input[str] | None = None
    model_registry_group_id: pulumi.Input[str] | None = None


class DeployIdentity(pulumi.ComponentResource):
    """A user-assigned identity with a GitHub OIDC federated credential and exactly the rights a
    promotion performs.

    One custom role on the resource group whose actions are derived from the resources the
    stack created (``deploy_permissions``: deployments, autoscale settings, identity assignment,
    the traffic template, alert reads), and a read-only custom role on the shared model registry.
    It can neither create other infrastructure nor grant roles: first deploys and infrastructure
    changes are run by an administrator (see docs/targets/azure.md).
    """

    client_id: pulumi.Output[str]
    """Client id GitHub's ``azure/login`` uses (not a secret)."""
    principal_id: pulumi.Output[str]
    """Object id of the identity's service principal."""
    subject: pulumi.Output[str]
    """The only OIDC subject the identity trusts."""
    actions: pulumi.Output[list[str]]
    """ARM actions of the deploy role (resource group scope)."""

    def __init__(self, name: str, args: DeployIdentityArgs, target: AzureTarget,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        validate_github_repository(args.github_repository)
        super().__init__("shipway:azure:DeployIdentity", name, None, opts)
        tags = dict(args.tags)
        subject = github_subject(args.github_repository, args.environment)
        actions, data_actions = deploy_permissions(args.resource_types, args.auth_mode)

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
        self.deployer_role = azure_native.authorization.RoleDefinition(
            f"{name}-deployer-role",
            role_name=f"Shipway promotion deployer ({args.environment})",
            description="Promote a pinned model version: deployments, autoscale, traffic, alert reads.",
            role_type="CustomRole",
            scope=args.resource_group_id,
            assignable_scopes=[args.resource_group_id],
            permissions=[{"actions": actions, "not_actions": [], "data_actions": data_actions,
                          "not_data_actions": []}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.deployer_grant = azure_native.authorization.RoleAssignment(
            f"{name}-deployer",
            principal_id=self.identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=self.deployer_role.id,
            scope=args.resource_group_id,
            description="shipway: promotion deployer",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.registry_role = None
        self.registry_grant = None
        if args.model_registry_id is not None and args.model_registry_group_id is not None:
            self.registry_role = azure_native.authorization.RoleDefinition(
                f"{name}-registry-reader-role",
                role_name=f"Shipway registry reader ({args.environment})",
                description="Read model versions in the shared Azure ML registry (pre-flight); never write.",
                role_type="CustomRole",
                scope=args.model_registry_group_id,
                assignable_scopes=[args.model_registry_group_id],
                permissions=[{"actions": list(REGISTRY_READ_ACTIONS), "not_actions": []}],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.registry_grant = azure_native.authorization.RoleAssignment(
                f"{name}-registry-reader",
                principal_id=self.identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=self.registry_role.id,
                scope=args.model_registry_id,
                description="shipway: registry reader",
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.client_id = self.identity.client_id
        self.principal_id = self.identity.principal_id
        self.subject = pulumi.Output.from_input(subject)
        self.actions = pulumi.Output.from_input(actions)
        self.register_outputs({
            "client_id": self.client_id,
            "principal_id": self.principal_id,
            "subject": self.subject,
            "actions": self.actions,
        })
