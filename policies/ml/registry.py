"""Registry protection rule: in prod, `pulumi destroy` cannot take the model registry with it."""

from __future__ import annotations

from typing import Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, get, is_prod, prod_only
from policies.local._kinds import kind

# Resources that *are* the registry or hold its entries, per target.
REGISTRY_TYPES: Final = frozenset(
    {
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
        "azure-native:machinelearningservices:Registry",
        "azure-native:machinelearningservices:RegistryModelContainer",
        "azure-native:machinelearningservices:RegistryModelVersion",
        "azure-native:machinelearningservices:ModelContainer",
        "azure-native:machinelearningservices:ModelVersion",
    }
)
LOCAL_REGISTRY_KINDS: Final = ("TrackingServer",)


def _protect_from_delete(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Registry entries are the audit record of what was served; losing them loses the history."""
    if not is_prod(args):
        return
    is_registry = (
        args.resource_type in REGISTRY_TYPES or kind(args.resource_type, args.props) in LOCAL_REGISTRY_KINDS
    )
    if not is_registry or args.opts.protect or get(args.props, "retainOnDelete") is True:
        return
    report_violation("the registry resource is neither protected nor retained on delete in prod", None)


registry_protect_from_delete = ResourceValidationPolicy(
    name="any-mlops-registry-protect-from-delete",
    description="Prod model registry resources are protected (protect=True) or retained on delete.",
    validate=_protect_from_delete,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps=(
        "Keep shipway:protectRegistry true in stacks/Pulumi.prod.yaml; components then create registry "
        "resources with ResourceOptions(protect=True, retain_on_delete=True)."
    ),
)

POLICIES = [registry_protect_from_delete]
