"""Authorization rules: no broad Owner/Contributor grants."""

from __future__ import annotations

import re

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, get, items

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
_PERMISSION_LISTS = ("actions", "dataActions")
# Built-in role definition ids that grant (almost) everything on their scope.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
# Scopes above a single resource: management group, subscription, resource group.
_BROAD_SCOPE = re.compile(
    r"^/$|^/providers/Microsoft\.Management/managementGroups/[^/]+/?$"
    r"|^/subscriptions/[^/]+/?$|^/subscriptions/[^/]+/resourceGroups/[^/]+/?$",
    re.IGNORECASE,
)


def _disallow_broad_grant(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Owner/Contributor over a subscription or resource group is far beyond any workload's needs."""
    if args.resource_type != ROLE_ASSIGNMENT:
        return
    role_id, scope = get(args.props, "roleDefinitionId"), get(args.props, "scope")
    if not isinstance(role_id, str) or not isinstance(scope, str):
        return
    role = BROAD_ROLES.get(role_id.rstrip("/").rsplit("/", 1)[-1].lower())
    if role and _BROAD_SCOPE.match(scope):
        report_violation(
            f"grants {role} at scope {scope!r}; grant a narrow built-in or custom role on "
            "the specific resource",
            None,
        )


roleassignment_disallow_broad_grant = ResourceValidationPolicy(
    name="azure-authorization-roleassignment-disallow-broad-grant",
    description="No Owner, Contributor or User Access Administrator grant at management-group, "
    "subscription or resource-group scope.",
    validate=_disallow_broad_grant,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Assign the narrowest built-in role (e.g. 'Storage Blob Data Reader', 'AzureML Data Scientist', "
        "'AcrPull') scoped to the single resource the principal uses."
    ),
)

def _wildcard(action: str) -> bool:
    """``*`` or a whole provider/resource type (``Microsoft.Storage/*``, ``.../*/write`` keeps ``*``)."""
    return action == "*" or action.endswith("/*") or "/*/" in action


def _roledefinition_disallow_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A custom role is the permission list a deploy identity holds: it names exact operations."""
    if args.resource_type != ROLE_DEFINITION:
        return
    for index, permission in enumerate(items(get(args.props, "permissions"))):
        for key in _PERMISSION_LISTS:
            for action in items(get(permission, key)):
                if isinstance(action, str) and _wildcard(action):
                    report_violation(
                        f"permissions[{index}].{key} allows wildcard {action!r}; name the exact operations",
                        None,
                    )


roledefinition_disallow_wildcards = ResourceValidationPolicy(
    name="azure-authorization-roledefinition-disallow-wildcards",
    description="Custom role definitions name exact operations: no '*' or '<provider>/*' actions.",
    validate=_roledefinition_disallow_wildcards,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "List the exact operations the identity performs (e.g. Microsoft.Resources/deployments/write) in "
        "permissions[].actions / dataActions instead of '*' or 'Microsoft.<Provider>/*'."
    ),
)

POLICIES = [roleassignment_disallow_broad_grant, roledefinition_disallow_wildcards]
