"""SNS rules: alert topics carry model and incident details, so they are encrypted with our key."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, get

TOPIC = "aws:sns/topic:Topic"


def _require_kms_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """An unencrypted topic stores every alert payload in plain text at rest."""
    if args.resource_type == TOPIC and get(args.props, "kmsMasterKeyId") in (None, ""):
        # A key id computed from the key resource is UNKNOWN at preview and counts as set.
        report_violation("kmsMasterKeyId is not set; encrypt the topic with a customer-managed KMS key", None)


topic_require_kms_key = ResourceValidationPolicy(
    name="aws-sns-topic-require-kms-key",
    description="SNS topics are encrypted with a customer-managed KMS key.",
    validate=_require_kms_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Set kms_master_key_id=<the environment's aws.kms.Key arn> on the aws.sns.Topic and allow the "
        "publishing services (cloudwatch.amazonaws.com) to use the key in its key policy."
    ),
)

POLICIES = [topic_require_kms_key]
