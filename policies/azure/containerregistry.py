"""Container registry rules: no shared admin credential."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

CONTAINER_REGISTRY = "azure-native:containerregistry:Registry"


def _disallow_admin_user(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The ACR admin user is a shared static password; pulls use managed identities."""
    if args.resource_type == CONTAINER_REGISTRY and get(args.props, "adminUserEnabled") not in (
        False,
        None,
        UNKNOWN,
    ):
        report_violation("adminUserEnabled is true; pull with a managed identity and AcrPull", None)


registry_disallow_admin_user = ResourceValidationPolicy(
    name="azure-containerregistry-registry-disallow-admin-user",
    description="Container registries do not enable the shared admin user.",
    validate=_disallow_admin_user,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set admin_user_enabled=False and grant AcrPull to the endpoint's managed identity.",
)

POLICIES = [registry_disallow_admin_user]
