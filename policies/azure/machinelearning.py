"""Azure Machine Learning rules: private workspaces/endpoints, pinned models, prod-grade deployments."""

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

from policies._core import (
    DEFAULT_ENFORCEMENT,
    MIN_PROD_INSTANCES,
    UNKNOWN,
    entries,
    get,
    is_prod,
    prod_only,
    refers_to,
    scalers_of,
    show,
)
from policies.ml.pinning import classify, describe

WORKSPACE = "azure-native:machinelearningservices:Workspace"
ONLINE_ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
ONLINE_DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
AUTOSCALE_SETTING = "azure-native:monitor:AutoscaleSetting"


def _workspace_disallow_public_access(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """The workspace holds the registry and data connections; it is reached over private links."""
    if args.resource_type != WORKSPACE:
        return
    access = get(args.props, "publicNetworkAccess")
    if access not in ("Disabled", UNKNOWN):
        report_violation(f"publicNetworkAccess is {access!r}; use 'Disabled' with a private endpoint", None)


workspace_disallow_public_access = ResourceValidationPolicy(
    name="azure-machinelearningservices-workspace-disallow-public-access",
    description="Azure ML workspaces disable public network access.",
    validate=_workspace_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set public_network_access='Disabled' and reach the workspace through a "
    "private endpoint.",
)


def _workspace_require_cmk_encryption(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """The workspace stores run metadata and registered models: encrypt them with our Key Vault key."""
    if args.resource_type != WORKSPACE:
        return
    status = get(args.props, "encryption.status")
    key = get(args.props, "encryption.keyVaultProperties.keyIdentifier")
    if UNKNOWN in (status, key):
        return
    if status != "Enabled" or not key:
        report_violation(
            "encryption is not Enabled with keyVaultProperties.keyIdentifier; use a customer-managed key",
            None,
        )


workspace_require_cmk_encryption = ResourceValidationPolicy(
    name="azure-machinelearningservices-workspace-require-cmk-encryption",
    description="Azure ML workspaces are encrypted with a customer-managed Key Vault key.",
    validate=_workspace_require_cmk_encryption,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set encryption={status: 'Enabled', key_vault_properties: {key_vault_arm_id: <vault id>, "
        "key_identifier: <key URI>}} on the Workspace (set at creation; changing it replaces the workspace)."
    ),
)


REGISTRY = "azure-native:machinelearningservices:Registry"


def _registry_disallow_public_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The shared registry holds every environment's models: reached over private endpoints only."""
    if args.resource_type != REGISTRY:
        return
    access = get(args.props, "publicNetworkAccess")
    if access not in ("Disabled", UNKNOWN):
        report_violation(f"publicNetworkAccess is {show(access)}; use 'Disabled' with a private endpoint "
                         "(group id 'amlregistry') in each environment's VNet", None)


registry_disallow_public_access = ResourceValidationPolicy(
    name="azure-machinelearningservices-registry-disallow-public-access",
    description="The Azure ML registry shared by dev, test and prod disables public network access.",
    validate=_registry_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set public_network_access='Disabled' on the Registry (components/azure/registry.py does "
    "unless azure.publicNetworkAccess is true) and reach it through a private endpoint with group id "
    "'amlregistry' and the privatelink.api.azureml.ms zone.",
)


def _endpoint_disallow_public_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Scoring endpoints are called from inside our network, never straight from the internet."""
    if args.resource_type != ONLINE_ENDPOINT:
        return
    access = get(args.props, "properties.publicNetworkAccess")
    if access not in ("Disabled", UNKNOWN):
        report_violation(f"properties.publicNetworkAccess is {access!r}; use 'Disabled'", None)
    auth = get(args.props, "properties.authMode")
    if auth not in ("Key", "AMLToken", "AADToken", UNKNOWN):
        report_violation(f"properties.authMode is {auth!r}; require 'AADToken', 'AMLToken' or 'Key'", None)


onlineendpoint_disallow_public_access = ResourceValidationPolicy(
    name="azure-machinelearningservices-onlineendpoint-disallow-public-access",
    description="Azure ML online endpoints are private and authenticated.",
    validate=_endpoint_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set properties.public_network_access='Disabled' and properties.auth_mode='AADToken' (or 'Key'); "
        "expose the endpoint through the workspace's private endpoint."
    ),
)


def _deployment_pin_registry_version(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The deployment runs the exact version that passed the gates."""
    if args.resource_type != ONLINE_DEPLOYMENT:
        return
    model = get(args.props, "properties.model")
    if model is UNKNOWN:
        return
    ref = classify("properties.model", model)
    if ref.problem:
        report_violation(describe(ref), None)


onlinedeployment_pin_registry_version = ResourceValidationPolicy(
    name="azure-machinelearningservices-onlinedeployment-pin-registry-version",
    description="Azure ML deployments serve an exact registry model version (no label, no 'latest', "
    "no path).",
    validate=_deployment_pin_registry_version,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Set properties.model to 'azureml://registries/<registry>/models/<name>/versions/<N>' (or the "
        "workspace model id ending /models/<name>/versions/<N>) with N pinned in stacks/Pulumi.<env>.yaml."
    ),
)


def _collects(props: Any) -> bool:
    enabled = {
        name
        for name, c in entries(get(props, "properties.dataCollector.collections"))
        if get(c, "dataCollectionMode") == "Enabled"
    }
    return {"model_inputs", "model_outputs"} <= enabled


def _deployment_enable_data_capture(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Drift checks and incident review need the requests prod actually served."""
    if args.resource_type != ONLINE_DEPLOYMENT or not is_prod(args):
        return
    if get(args.props, "properties.dataCollector") is UNKNOWN:
        return
    if not _collects(args.props) and get(args.props, "properties.appInsightsEnabled") is not True:
        report_violation(
            "neither properties.dataCollector (model_inputs and model_outputs Enabled) nor "
            "properties.appInsightsEnabled is on; prod deployments capture requests",
            None,
        )


onlinedeployment_enable_data_capture = ResourceValidationPolicy(
    name="azure-machinelearningservices-onlinedeployment-enable-data-capture",
    description="Prod Azure ML deployments collect model inputs/outputs or log requests.",
    validate=_deployment_enable_data_capture,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    **prod_only(),
    remediation_steps=(
        "Set properties.data_collector.collections model_inputs and model_outputs with "
        "data_collection_mode='Enabled' (and/or properties.app_insights_enabled=True)."
    ),
)


def _deployment_min_instances(props: Any) -> Any:
    if get(props, "properties.scaleSettings.scaleType") == "TargetUtilization":
        return get(props, "properties.scaleSettings.minInstances")
    return get(props, "sku.capacity")


def _deployment_require_min_instances(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """One instance is an outage during every update or node failure."""
    if args.resource_type != ONLINE_DEPLOYMENT or not is_prod(args):
        return
    count = _deployment_min_instances(args.props)
    if count is not UNKNOWN and (count is None or count < MIN_PROD_INSTANCES):
        report_violation(
            f"the deployment runs {show(count)} instance(s) at minimum; prod runs at least "
            f"{MIN_PROD_INSTANCES}",
            None,
        )


onlinedeployment_require_min_instances = ResourceValidationPolicy(
    name="azure-machinelearningservices-onlinedeployment-require-min-instances",
    description="Prod Azure ML deployments run at least two instances.",
    validate=_deployment_require_min_instances,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps="Set sku.capacity >= 2 (or scale_settings.min_instances >= 2 with TargetUtilization).",
)


def _autoscales(setting: Any, deployment: Any) -> bool:
    """The monitor autoscale setting's target is this deployment."""
    return refers_to(setting, "targetResourceUri", deployment)


def _deployment_require_autoscaling(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Capacity follows prod traffic instead of a one-off guess."""
    if not is_prod(args):
        return
    for deployment, settings in scalers_of(args, ONLINE_DEPLOYMENT, AUTOSCALE_SETTING, _autoscales):
        if get(deployment.props, "properties.scaleSettings.scaleType") in ("TargetUtilization", UNKNOWN):
            continue
        if not settings:
            report_violation(
                f"deployment '{deployment.name}' has neither TargetUtilization scale settings nor "
                "an autoscale setting",
                deployment.urn,
            )


onlinedeployment_require_autoscaling = StackValidationPolicy(
    name="azure-machinelearningservices-onlinedeployment-require-autoscaling",
    description="Prod Azure ML deployments autoscale.",
    validate=_deployment_require_autoscaling,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    **prod_only(),
    remediation_steps=(
        "Use properties.scale_settings scale_type='TargetUtilization' with min_instances>=2, or add an "
        "azure-native monitor.AutoscaleSetting whose target_resource_uri is the deployment's id."
    ),
)

POLICIES = [
    workspace_disallow_public_access,
    workspace_require_cmk_encryption,
    registry_disallow_public_access,
    onlineendpoint_disallow_public_access,
    onlinedeployment_pin_registry_version,
    onlinedeployment_enable_data_capture,
    onlinedeployment_require_min_instances,
    onlinedeployment_require_autoscaling,
]
