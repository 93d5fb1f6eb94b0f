"""What every Azure component shares: placement, built-in roles, naming and the secure vault.

Kept in one module so the rules that matter for security (which role GUID, which scope,
which network default) are written once and read the same way by every component.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from shipway_core.config import AzureSettings

# Built-in role definition GUIDs: public constants, identical in every tenant.
# Only narrow, resource-scoped data-plane or service roles live here; Owner, Contributor and
# User Access Administrator are deliberately absent so no component can grant them.
BUILTIN_ROLES: Mapping[str, str] = {
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "AzureML Metrics Writer (preview)": "635dd51f-9968-44d3-b7fb-6d9a6bd613ae",
    "AzureML Registry User": "1823dd4f-9b8c-4ab6-ab4e-7397a3684615",
    "Key Vault Crypto Service Encryption User": "e147488a-f6f5-4113-8e2d-b22465e65bf6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Data Reader": "b0d8363b-8ddd-447d-831f-62ca05bff136",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
}

# Never granted by Shipway; the policy pack rejects them at subscription/resource-group scope.
FORBIDDEN_ROLES: Mapping[str, str] = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
}


@dataclass
class AzureTarget:
    """Where a component's resources go: one resource group in one location.

    The resource group is an input (an existing group's name, or the ``name`` output of a
    group the platform created), so components never create or look up groups themselves.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    settings: AzureSettings = field(default_factory=AzureSettings)

    @property
    def private(self) -> bool:
        """Public network access is off unless the stack explicitly turned it on."""
        return not self.settings.public_network_access


def access(private: bool) -> str:
    """The ARM spelling of a public-network-access switch."""
    return "Disabled" if private else "Enabled"


def client_config(parent: pulumi.Resource) -> pulumi.Output[azure_native.authorization.GetClientConfigResult]:
    """Subscription and tenant of the deploying principal (answered with zero GUIDs under mocks)."""
    return azure_native.authorization.get_client_config_output(
        opts=pulumi.InvokeOutputOptions(parent=parent)
    )


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    """Full ARM id of a built-in role; unknown or forbidden role names fail before anything is created."""
    if role not in BUILTIN_ROLES:
        raise ValueError(
            f"role: {role!r} is not valid; allowed: {', '.join(sorted(BUILTIN_ROLES))}"
        )
    guid = BUILTIN_ROLES[role]
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", guid
    )


def grant(
    name: str,
    *,
    principal_id: pulumi.Input[str],
    role: str,
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> azure_native.authorization.RoleAssignment:
    """Assign one built-in role to a managed identity on exactly one resource.

    ``scope`` is always a resource id produced by a sibling resource, never a subscription or
    resource-group id, so the blast radius of a leaked identity is that one resource.
    """
    return azure_native.authorization.RoleAssignment(
        name,
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        role_definition_id=role_definition_id(subscription_id, role),
        scope=scope,
        description=f"shipway: {role}",
        opts=pulumi.ResourceOptions(parent=parent),
    )


def unique_name(prefix: str, seed: pulumi.Input[str], logical: str, *, max_len: int,
                hyphens: bool = False) -> pulumi.Output[str]:
    """A globally unique, deterministic physical name (storage, vault, registry, endpoint).

    Azure wants these unique across all customers, so the name carries a short hash of the
    subscription id and the logical name (the Bicep ``uniqueString`` idiom); it is stable for
    the life of the stack, so a re-run never replaces the resource.
    """
    keep = r"[^a-z0-9-]" if hyphens else r"[^a-z0-9]"
    joined = f"{prefix}-{logical}" if prefix and hyphens else f"{prefix}{logical}"
    # Vault and endpoint names forbid consecutive hyphens and a leading/trailing one.
    stem = re.sub(r"-{2,}", "-", re.sub(keep, "", joined.lower())).strip("-")

    def build(seed_value: str) -> str:
        digest = hashlib.sha256(f"{seed_value}/{logical}".encode()).hexdigest()[:8]
        head = stem[: max_len - len(digest) - (1 if hyphens else 0)].rstrip("-")
        return f"{head}-{digest}" if hyphens else f"{head}{digest}"

    return pulumi.Output.from_input(seed).apply(build)


def secure_vault(
    name: str,
    *,
    target: AzureTarget,
    tenant_id: pulumi.Input[str],
    vault_name: pulumi.Input[str],
    tags: Mapping[str, str],
    parent: pulumi.Resource,
    protect: bool = False,
) -> azure_native.keyvault.Vault:
    """A Key Vault in RBAC mode with soft delete and purge protection, private by default.

    RBAC mode (no access policies) is what lets consumers be granted *Key Vault Secrets User*
    on a single secret; purge protection means a deleted secret stays recoverable for 90 days
    even against a compromised admin.
    """
    return azure_native.keyvault.Vault(
        name,
        vault_name=vault_name,
        resource_group_name=target.resource_group_name,
        location=target.location,
        properties=azure_native.keyvault.VaultPropertiesArgs(
            tenant_id=tenant_id,
            sku=azure_native.keyvault.SkuArgs(family="A", name=azure_native.keyvault.SkuName.STANDARD),
            enable_rbac_authorization=True,
            enable_soft_delete=True,
            soft_delete_retention_in_days=90,
            enable_purge_protection=True,
            enabled_for_deployment=False,
            enabled_for_disk_encryption=False,
            enabled_for_template_deployment=False,
            public_network_access=access(target.private),
            network_acls=azure_native.keyvault.NetworkRuleSetArgs(
                default_action="Deny" if target.private else "Allow",
                bypass="AzureServices",
            ),
        ),
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect),
    )
