"""ECR rules: serving images are sealed with our key and their tags never move."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

REPOSITORY = "aws:ecr/repository:Repository"


def _require_kms_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Images embed model-serving code and sometimes weights: encrypt them with a key we control."""
    if args.resource_type != REPOSITORY:
        return
    config = get(args.props, "encryptionConfigurations.0")
    if config is UNKNOWN:
        return
    if get(config, "encryptionType") != "KMS" or not get(config, "kmsKey"):
        report_violation("encryptionConfigurations does not use KMS with a customer-managed kmsKey", None)


repository_require_kms_encryption = ResourceValidationPolicy(
    name="aws-ecr-repository-require-kms-encryption",
    description="ECR repositories are encrypted with a customer-managed KMS key.",
    validate=_require_kms_encryption,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Set encryption_configurations=[{encryption_type: 'KMS', kms_key: <the environment's aws.kms.Key "
        "arn>}] on the aws.ecr.Repository (this forces a new repository; push the images again)."
    ),
)


def _require_immutable_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A pinned model is only reproducible if the serving image tag it runs on cannot be overwritten."""
    if args.resource_type != REPOSITORY:
        return
    mutability = get(args.props, "imageTagMutability", "MUTABLE")
    if mutability not in ("IMMUTABLE", UNKNOWN):
        report_violation(f"imageTagMutability is {mutability!r}; use 'IMMUTABLE'", None)


repository_require_immutable_tags = ResourceValidationPolicy(
    name="aws-ecr-repository-require-immutable-tags",
    description="ECR repositories make image tags immutable.",
    validate=_require_immutable_tags,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Set image_tag_mutability='IMMUTABLE' on the aws.ecr.Repository; publish each build under a new tag."
    ),
)

POLICIES = [repository_require_kms_encryption, repository_require_immutable_tags]
