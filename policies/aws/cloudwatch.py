"""CloudWatch Logs and CloudTrail rules: logs kept long enough, sealed, and data events audited."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items, retention_shortfall, schema

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TRAIL = "aws:cloudtrail/trail:Trail"


def _require_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Audit and incident work needs logs older than the env's minimum; 0 means never expire."""
    if args.resource_type != LOG_GROUP:
        return
    days = get(args.props, "retentionInDays")
    if days == 0:
        return
    shortfall = retention_shortfall(args, days, "not set")
    if shortfall:
        report_violation(shortfall, None)


loggroup_require_retention = ResourceValidationPolicy(
    name="aws-cloudwatch-loggroup-require-retention",
    description="CloudWatch log groups keep logs at least the environment's minimum retention.",
    validate=_require_retention,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    config_schema=schema("minRetentionDays"),
    remediation_steps=(
        "Set retention_in_days on the aws.cloudwatch.LogGroup to at least the environment minimum "
        "(policies/config/<env>.json: minRetentionDays) using one of CloudWatch's allowed values."
    ),
)


def _loggroup_require_kms_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Inference logs can carry request payload fragments: seal them with our key."""
    if args.resource_type == LOG_GROUP and not get(args.props, "kmsKeyId"):
        report_violation("kmsKeyId is not set; encrypt the log group with a customer-managed KMS key", None)


loggroup_require_kms_key = ResourceValidationPolicy(
    name="aws-cloudwatch-loggroup-require-kms-key",
    description="CloudWatch log groups are encrypted with a customer-managed KMS key.",
    validate=_loggroup_require_kms_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Set kms_key_id on the aws.cloudwatch.LogGroup and allow the logs.<region>.amazonaws.com "
        "principal to use the key in its key policy."
    ),
)


def _has_data_events(props: Any) -> bool:
    for selector in items(get(props, "eventSelectors")):
        if items(get(selector, "dataResources")):
            return True
    for selector in items(get(props, "advancedEventSelectors")):
        for field in items(get(selector, "fieldSelectors")):
            if get(field, "field") == "eventCategory" and "Data" in items(get(field, "equals")):
                return True
    return False


def _trail_enable_data_events(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Management events say who changed a bucket; only data events say who read the model in it."""
    if args.resource_type != TRAIL:
        return
    if UNKNOWN in (get(args.props, "eventSelectors"), get(args.props, "advancedEventSelectors")):
        return
    if not _has_data_events(args.props):
        report_violation(
            "the trail records no data events; add S3 object (and SageMaker) data event selectors", None
        )
    if get(args.props, "enableLogFileValidation") not in (True, UNKNOWN):
        report_violation(
            "enableLogFileValidation is not true; enable digest files so tampering is detectable", None
        )


trail_enable_data_events = ResourceValidationPolicy(
    name="aws-cloudtrail-trail-enable-data-events",
    description="CloudTrail trails record data events and validate their log files.",
    validate=_trail_enable_data_events,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Add advanced_event_selectors with eventCategory = Data for resources.type AWS::S3::Object "
        "(scoped to the model and data buckets) and set enable_log_file_validation=True."
    ),
)

POLICIES = [loggroup_require_retention, loggroup_require_kms_key, trail_enable_data_events]
