"""RDS rules (the self-hosted MLflow backend store): encrypted with our key, never public."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get

INSTANCE = "aws:rds/instance:Instance"
# Aurora: encryption is set on the cluster, network exposure on each cluster instance.
CLUSTER = "aws:rds/cluster:Cluster"
CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
ENCRYPTED_AT = (INSTANCE, CLUSTER)
EXPOSED_AT = (INSTANCE, CLUSTER_INSTANCE)


def _require_kms_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The registry database holds lineage and gate evidence: encrypt it with a key we control."""
    if args.resource_type not in ENCRYPTED_AT:
        return
    if get(args.props, "storageEncrypted") not in (True, UNKNOWN):
        report_violation("storageEncrypted is not true; encrypt the instance storage", None)
    elif not get(args.props, "kmsKeyId"):
        report_violation("kmsKeyId is not set; encrypt with a customer-managed KMS key", None)


instance_require_kms_encryption = ResourceValidationPolicy(
    name="aws-rds-instance-require-kms-encryption",
    description="RDS instances and Aurora clusters are encrypted at rest with a customer-managed KMS key.",
    validate=_require_kms_encryption,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps="Set storage_encrypted=True and kms_key_id=<aws.kms.Key arn> on the aws.rds.Instance.",
)


def _disallow_public_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A database reachable from the internet is one weak password away from a breach."""
    if args.resource_type in EXPOSED_AT and get(args.props, "publiclyAccessible") is True:
        report_violation("publiclyAccessible is true; keep the instance in private subnets", None)


instance_disallow_public_access = ResourceValidationPolicy(
    name="aws-rds-instance-disallow-public-access",
    description="RDS instances and Aurora cluster instances are not publicly accessible.",
    validate=_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Set publicly_accessible=False and place the instance in a private db_subnet_group_name; "
        "reach it from the tracking server's security group only."
    ),
)

POLICIES = [instance_require_kms_encryption, instance_disallow_public_access]
