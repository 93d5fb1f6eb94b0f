"""Key Vault rules: the vault holding our customer-managed keys cannot be purged or bypassed."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

VAULT = "azure-native:keyvault:Vault"


def _enable_purge_protection(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Without purge protection, a deleted vault takes every CMK (and so every artifact) with it."""
    if args.resource_type != VAULT:
        return
    if get(args.props, "properties.enablePurgeProtection") not in (True, UNKNOWN):
        report_violation("properties.enablePurgeProtection is not true; enable purge protection", None)
    if get(args.props, "properties.enableRbacAuthorization") not in (True, UNKNOWN):
        report_violation(
            "properties.enableRbacAuthorization is not true; use RBAC instead of access policies", None
        )


vault_enable_purge_protection = ResourceValidationPolicy(
    name="azure-keyvault-vault-enable-purge-protection",
    description="Key Vaults have purge protection and RBAC authorization enabled.",
    validate=_enable_purge_protection,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set properties.enable_purge_protection=True, enable_soft_delete=True and "
        "enable_rbac_authorization=True on the Vault."
    ),
)

POLICIES = [vault_enable_purge_protection]
