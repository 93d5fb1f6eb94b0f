"""KMS and Secrets Manager rules: customer-managed keys that rotate, secrets sealed with them."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

KEY = "aws:kms/key:Key"
SECRETSMANAGER_TYPE = "aws:secretsmanager/secret:Secret"


def _enable_rotation(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Rotation bounds how much data one compromised key version can decrypt."""
    if args.resource_type != KEY:
        return
    spec = get(args.props, "customerMasterKeySpec", "SYMMETRIC_DEFAULT")
    if spec != "SYMMETRIC_DEFAULT":
        return  # AWS only rotates symmetric keys
    if get(args.props, "enableKeyRotation") not in (True, UNKNOWN):
        report_violation("enableKeyRotation is not true; enable yearly automatic rotation", None)


key_enable_rotation = ResourceValidationPolicy(
    name="aws-kms-key-enable-rotation",
    description="Customer-managed symmetric KMS keys rotate automatically.",
    validate=_enable_rotation,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps="Set enable_key_rotation=True (and optionally rotation_period_in_days) on the "
    "aws.kms.Key.",
)


def _secret_require_kms_key(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Secrets encrypted with the AWS-managed key cannot be scoped or revoked by us."""
    if args.resource_type == SECRETSMANAGER_TYPE and not get(args.props, "kmsKeyId"):
        report_violation("kmsKeyId is not set; encrypt the secret with a customer-managed KMS key", None)


secret_require_kms_key = ResourceValidationPolicy(
    name="aws-secretsmanager-secret-require-kms-key",
    description="Secrets Manager secrets are encrypted with a customer-managed KMS key.",
    validate=_secret_require_kms_key,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set kms_key_id=<the environment's aws.kms.Key arn> on the aws.secretsmanager.Secret.",
)

POLICIES = [key_enable_rotation, secret_require_kms_key]
