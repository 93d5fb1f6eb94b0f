"""SageMaker serving rules: pinned registry versions, sealed data, prod-grade capacity and rollback."""

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
    get,
    is_prod,
    items,
    prod_only,
    scalers_of,
    schema,
    setting,
    show,
)
from policies.ml.pinning import describe, sagemaker_model_refs

MODEL = "aws:sagemaker/model:Model"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
SCALING_TARGET = "aws:appautoscaling/target:Target"
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Every prod endpoint rolls back on these signals (alarm names contain the word).
ROLLBACK_SIGNALS = ("latency", "error", "drift")


def _pin_registry_version(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """What runs must be exactly the version that passed the gates, not whatever an alias says today."""
    if args.resource_type != MODEL:
        return
    for ref in sagemaker_model_refs(args.props, str(setting(args, "artifactRoot"))):
        if ref.problem:
            report_violation(describe(ref), None)


model_pin_registry_version = ResourceValidationPolicy(
    name="aws-sagemaker-model-pin-registry-version",
    description="SageMaker models serve an exact registry version, never an alias, 'latest' or a "
    "raw S3 path.",
    validate=_pin_registry_version,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    config_schema=schema("artifactRoot"),
    remediation_steps=(
        "Reference the model as a versioned model package ARN (model_package_name='arn:...:model-package/"
        "<group>/<N>') or set SHIPWAY_MODEL_URI='models:/<name>/<N>' in the container environment; pin N in "
        "stacks/Pulumi.<env>.yaml (shipway:models) and remove model_data_url."
    ),
)


def _endpointconfig_require_kms_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Endpoint volumes and captured payloads are sealed with a key we control."""
    if args.resource_type != ENDPOINT_CONFIG:
        return
    if not get(args.props, "kmsKeyArn"):
        report_violation(
            "kmsKeyArn is not set; encrypt endpoint storage with a customer-managed KMS key", None
        )
    capture = get(args.props, "dataCaptureConfig")
    if capture is not None and get(capture, "enableCapture") is True and not get(capture, "kmsKeyId"):
        report_violation(
            "dataCaptureConfig.kmsKeyId is not set; encrypt captured payloads with a "
            "customer-managed KMS key",
            None,
        )


endpointconfig_require_kms_key = ResourceValidationPolicy(
    name="aws-sagemaker-endpointconfig-require-kms-key",
    description="SageMaker endpoint configurations encrypt storage and captured data with a "
    "customer-managed key.",
    validate=_endpointconfig_require_kms_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set kms_key_arn and data_capture_config.kms_key_id to the environment's "
    "aws.kms.Key arn.",
)


def _enable_data_capture(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Drift detection and incident review need the requests prod actually served."""
    if args.resource_type != ENDPOINT_CONFIG or not is_prod(args):
        return
    capture = get(args.props, "dataCaptureConfig")
    if capture is UNKNOWN:
        return
    if capture is None or get(capture, "enableCapture") is not True:
        report_violation("dataCaptureConfig.enableCapture is not true; prod endpoints capture requests", None)
        return
    percent = get(capture, "initialSamplingPercentage")
    if percent is not UNKNOWN and (percent is None or percent <= 0):
        report_violation(
            f"dataCaptureConfig.initialSamplingPercentage is {show(percent)}; capture a positive "
            "share of requests",
            None,
        )
    options = get(capture, "captureOptions")
    modes = {get(o, "captureMode") for o in items(options)}
    if (
        options is not UNKNOWN
        and UNKNOWN not in modes
        and not {"Input", "Output"} <= modes
        and "InputAndOutput" not in modes
    ):
        report_violation("dataCaptureConfig.captureOptions does not capture both Input and Output", None)


endpointconfig_enable_data_capture = ResourceValidationPolicy(
    name="aws-sagemaker-endpointconfig-enable-data-capture",
    description="Prod SageMaker endpoints capture request and response payloads.",
    validate=_enable_data_capture,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    **prod_only(),
    remediation_steps=(
        "Set data_capture_config with enable_capture=True, initial_sampling_percentage>0, capture_options "
        "Input and Output, destination_s3_uri=<capture bucket> and kms_key_id."
    ),
)


def _require_min_instances(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """One instance is an outage during every deploy, AZ event or host failure."""
    if args.resource_type != ENDPOINT_CONFIG or not is_prod(args):
        return
    for variant in items(get(args.props, "productionVariants")):
        name = get(variant, "variantName", "?")
        if get(variant, "serverlessConfig") is not None:
            report_violation(f"variant {name!r} is serverless; prod variants run provisioned instances", None)
            continue
        count = get(variant, "initialInstanceCount")
        if count is not UNKNOWN and (count is None or count < MIN_PROD_INSTANCES):
            report_violation(
                f"variant {name!r} has initialInstanceCount {show(count)}; prod runs at least "
                f"{MIN_PROD_INSTANCES}",
                None,
            )


endpointconfig_require_min_instances = ResourceValidationPolicy(
    name="aws-sagemaker-endpointconfig-require-min-instances",
    description="Prod SageMaker endpoint variants run at least two instances.",
    validate=_require_min_instances,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps="Set shipway:models.<name>.instances >= 2 in stacks/Pulumi.prod.yaml "
    "(initial_instance_count).",
)


def _attach_rollback_alarms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A bad version in prod rolls itself back when latency, errors or drift cross their SLO."""
    if args.resource_type != ENDPOINT or not is_prod(args):
        return
    alarms = get(args.props, "deploymentConfig.autoRollbackConfiguration.alarms")
    if alarms is UNKNOWN:
        return
    names = [str(get(a, "alarmName", "")).lower() for a in items(alarms)]
    missing = [s for s in ROLLBACK_SIGNALS if not any(s in n for n in names)]
    if missing:
        report_violation(
            f"deploymentConfig.autoRollbackConfiguration has no {', '.join(missing)} alarm; "
            "attach the latency, error and drift alarms",
            None,
        )


endpoint_attach_rollback_alarms = ResourceValidationPolicy(
    name="aws-sagemaker-endpoint-attach-rollback-alarms",
    description="Prod SageMaker endpoints roll back automatically on latency, error and drift alarms.",
    validate=_attach_rollback_alarms,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    **prod_only(),
    remediation_steps=(
        "Set deployment_config.blue_green_update_policy and auto_rollback_configuration.alarms to the "
        "endpoint's CloudWatch alarms whose names contain 'latency', 'error' and 'drift'."
    ),
)


def _scales(target: Any, endpoint: Any) -> bool:
    if get(target.props, "scalableDimension") != VARIANT_DIMENSION:
        return False
    if any(dep.urn == endpoint.urn for dep in target.property_dependencies.get("resourceId", [])):
        return True
    resource_id, name = get(target.props, "resourceId"), get(endpoint.props, "name")
    return (
        isinstance(resource_id, str) and isinstance(name, str) and resource_id.startswith(f"endpoint/{name}/")
    )


def _require_autoscaling(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Prod traffic is not constant; capacity follows it instead of being guessed once."""
    if not is_prod(args):
        return
    for endpoint, mine in scalers_of(args, ENDPOINT, SCALING_TARGET, _scales):
        if not mine:
            report_violation(
                f"endpoint '{endpoint.name}' has no application autoscaling target", endpoint.urn
            )
            continue
        for target in mine:
            low = get(target.props, "minCapacity")
            if low is not UNKNOWN and (low is None or low < MIN_PROD_INSTANCES):
                report_violation(
                    f"endpoint '{endpoint.name}' autoscaling minCapacity is {show(low)}; prod keeps at "
                    f"least {MIN_PROD_INSTANCES}",
                    endpoint.urn,
                )


endpoint_require_autoscaling = StackValidationPolicy(
    name="aws-sagemaker-endpoint-require-autoscaling",
    description="Prod SageMaker endpoints have an autoscaling target with at least two instances.",
    validate=_require_autoscaling,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    **prod_only(),
    remediation_steps=(
        "Add an aws.appautoscaling.Target (service_namespace='sagemaker', scalable_dimension="
        "'sagemaker:variant:DesiredInstanceCount', resource_id=endpoint/<name>/variant/<variant>, "
        "min_capacity>=2) and a target-tracking aws.appautoscaling.Policy."
    ),
)

POLICIES = [
    model_pin_registry_version,
    endpointconfig_require_kms_key,
    endpointconfig_enable_data_capture,
    endpointconfig_require_min_instances,
    endpoint_attach_rollback_alarms,
    endpoint_require_autoscaling,
]
