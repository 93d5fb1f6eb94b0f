"""Region rule: data residency is a property of where resources are created."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items, schema, setting


def _normalise(region: str) -> str:
    """Azure accepts 'West Europe' and 'westeurope' for the same place."""
    return region.replace(" ", "").lower()


def _region(args: ResourceValidationArgs) -> Any:
    """The region a cloud resource lands in: its own setting first, then its provider's."""
    if args.resource_type.startswith("aws:"):
        own = get(args.props, "region")
        if own is None and args.provider is not None:
            return get(args.provider.props, "region")
        return own
    if args.resource_type.startswith("azure-native:"):
        own = get(args.props, "location")
        if own is None and args.provider is not None:
            return get(args.provider.props, "location")
        return own
    return None


def _restrict_region(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Resources outside the allow-list break data-residency commitments."""
    allowed = [_normalise(r) for r in items(setting(args, "allowedRegions")) if isinstance(r, str)]
    if not allowed:
        return
    region = _region(args)
    if region is None or region is UNKNOWN or not isinstance(region, str):
        return
    if region.lower() != "global" and _normalise(region) not in allowed:
        report_violation(f"region {region!r} is not allowed; allowed regions: {', '.join(allowed)}", None)


resource_restrict_region = ResourceValidationPolicy(
    name="any-compliance-resource-restrict-region",
    description="Cloud resources are created only in the environment's allowed regions.",
    validate=_restrict_region,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    config_schema=schema("allowedRegions"),
    remediation_steps=(
        "Set shipway:region in stacks/Pulumi.<env>.yaml to an allowed region (and do not override region/"
        "location per resource); extend allowedRegions in policies/config/<env>.json only with approval."
    ),
)

POLICIES = [resource_restrict_region]
