"""Azure audit and retention rules: diagnostic settings on every audited resource, long-lived logs."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items, of_type, refers_to, retention_shortfall, schema

DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
LOG_ANALYTICS = "azure-native:operationalinsights:Workspace"
# Resources whose data-plane access must be auditable.
AUDITED = (
    "azure-native:storage:StorageAccount",
    "azure-native:keyvault:Vault",
    "azure-native:machinelearningservices:Workspace",
    "azure-native:machinelearningservices:OnlineEndpoint",
    "azure-native:containerregistry:Registry",
)
_AUDIT_GROUPS = ("audit", "allLogs")


def _captures_audit_logs(setting: Any) -> bool:
    logs = get(setting.props, "logs")
    if logs is UNKNOWN:
        return True  # judged at `pulumi up`, when the categories are known
    for log in items(logs):
        if get(log, "enabled") is True and (
            get(log, "categoryGroup") in _AUDIT_GROUPS or get(log, "category")
        ):
            return True
    return False


def _require_diagnostic_settings(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Who read a model, a key or a blob must be answerable after the fact."""
    settings = of_type(args, DIAGNOSTIC_SETTING)
    for resource in of_type(args, *AUDITED):
        mine = [
            s
            for s in settings
            if refers_to(s, "resourceUri", resource)
            or (
                isinstance(get(s.props, "resourceUri"), str)
                and isinstance(get(resource.props, "id"), str)
                and get(s.props, "resourceUri").startswith(get(resource.props, "id") + "/")
            )
        ]
        if not mine:
            report_violation(f"'{resource.name}' has no diagnostic setting", resource.urn)
        elif not any(_captures_audit_logs(s) for s in mine):
            report_violation(
                f"'{resource.name}' diagnostic settings enable no audit log category", resource.urn
            )


resource_require_diagnostic_settings = StackValidationPolicy(
    name="azure-monitor-resource-require-diagnostic-settings",
    description="Storage accounts, Key Vaults, ML workspaces/endpoints and registries send audit logs "
    "through a diagnostic setting.",
    validate=_require_diagnostic_settings,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Add an azure-native monitor.DiagnosticSetting with resource_uri=<resource id> (for storage: "
        "<account id>/blobServices/default), workspace_id=<Log Analytics workspace> and logs "
        "[{category_group: 'audit', enabled: True}]."
    ),
)


def _workspace_require_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Audit evidence has to outlive the incident that needs it."""
    if args.resource_type != LOG_ANALYTICS:
        return
    shortfall = retention_shortfall(args, get(args.props, "retentionInDays"), "not set (30 days)")
    if shortfall:
        report_violation(shortfall, None)


workspace_require_retention = ResourceValidationPolicy(
    name="azure-operationalinsights-workspace-require-retention",
    description="Log Analytics workspaces keep logs at least the environment's minimum retention.",
    validate=_workspace_require_retention,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    config_schema=schema("minRetentionDays"),
    remediation_steps="Set retention_in_days on the operationalinsights.Workspace to at least "
    "minRetentionDays.",
)

POLICIES = [resource_require_diagnostic_settings, workspace_require_retention]
