"""Hardened S3 buckets: the artifact store and the access-log bucket it logs to.

Every bucket gets ownership enforced (no ACLs), all four public-access blocks, versioning,
default encryption, a TLS-only policy and lifecycle rules. The artifact bucket uses SSE-KMS
with the platform key; the log bucket must use SSE-S3 because S3 server access logging and
ALB access logs cannot write to SSE-KMS buckets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_aws import s3 as S3  # short alias: the S3 type names are long

from components.aws._base import AccountFacts, policy_json, statement


def tls_only_statements(bucket_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Deny plain HTTP and TLS < 1.2 for every principal (the one place a wildcard action is right)."""
    objects = pulumi.Output.concat(bucket_arn, "/*")
    return [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyOutdatedTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
    ]


def _harden(
    name: str,
    bucket: S3.Bucket,
    parent: pulumi.Resource,
    *,
    kms_key_arn: pulumi.Input[str] | None,
    policy_statements: Sequence[Mapping[str, Any]],
    lifecycle: Sequence[S3.BucketLifecycleConfigurationRuleArgs],
    log_bucket: pulumi.Input[str] | None,
    log_prefix: str,
) -> S3.BucketPublicAccessBlock:
    """Everything a bucket needs besides itself; returns the public access block (policy waits on it)."""
    child = pulumi.ResourceOptions(parent=parent)
    S3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule=S3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child,
    )
    block = S3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    S3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration=S3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=child,
    )
    default = (
        S3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
        )
        if kms_key_arn is not None
        else S3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="AES256"
        )
    )
    S3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[
            S3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default, bucket_key_enabled=kms_key_arn is not None
            )
        ],
        opts=child,
    )
    S3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=list(lifecycle), opts=child)
    if log_bucket is not None:
        S3.BucketLogging(
            f"{name}-logging",
            bucket=bucket.id,
            target_bucket=log_bucket,
            target_prefix=log_prefix,
            opts=child,
        )
    S3.BucketPolicy(
        f"{name}-policy",
        bucket=bucket.id,
        policy=policy_json([*tls_only_statements(bucket.arn), *policy_statements]),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[block]),
    )
    return block


def _expire_noncurrent(days: int) -> list[S3.BucketLifecycleConfigurationRuleArgs]:
    return [
        S3.BucketLifecycleConfigurationRuleArgs(
            id="expire-noncurrent-versions",
            status="Enabled",
            filter=S3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            noncurrent_version_expiration=S3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=days
            ),
        ),
        S3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-uploads",
            status="Enabled",
            filter=S3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=S3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7
            ),
        ),
    ]


def log_bucket(
    name: str,
    *,
    bucket_prefix: str,
    tags: Mapping[str, str],
    facts: AccountFacts,
    retention_days: int,
    parent: pulumi.Resource,
    retain: bool,
) -> S3.Bucket:
    """Destination of S3 server access logs and ALB access logs (SSE-S3, see module docstring)."""
    bucket = S3.Bucket(
        name,
        bucket_prefix=bucket_prefix,
        force_destroy=False,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
    source = {"StringEquals": {"aws:SourceAccount": facts.account_id}}
    writers = [
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(bucket.arn, "/s3/*"),
            "Condition": source,
        },
        {
            "Sid": "AlbAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(bucket.arn, "/alb/*"),
            "Condition": source,
        },
    ]
    lifecycle = [
        *_expire_noncurrent(30),
        S3.BucketLifecycleConfigurationRuleArgs(
            id="expire-logs",
            status="Enabled",
            filter=S3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            expiration=S3.BucketLifecycleConfigurationRuleExpirationArgs(days=retention_days),
        ),
    ]
    _harden(
        name,
        bucket,
        parent,
        kms_key_arn=None,
        policy_statements=writers,
        lifecycle=lifecycle,
        log_bucket=None,
        log_prefix="",
    )
    return bucket


def artifact_bucket(
    name: str,
    *,
    bucket_prefix: str,
    tags: Mapping[str, str],
    kms_key_arn: pulumi.Input[str],
    logs: S3.Bucket,
    parent: pulumi.Resource,
    retain: bool,
    readers: Sequence[pulumi.Input[str]] = (),
) -> S3.Bucket:
    """MLflow artifacts, packaged model versions and endpoint data capture, SSE-KMS encrypted.

    ``readers`` are role ARNs of other accounts' deploy roles allowed to read ``models/`` for
    cross-account promotion; nobody else is granted anything by the bucket policy.
    """
    bucket = S3.Bucket(
        name,
        bucket_prefix=bucket_prefix,
        force_destroy=False,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
    extra: list[dict[str, Any]] = [
        {
            "Sid": "DenyUploadsWithOtherKeys",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(bucket.arn, "/*"),
            "Condition": {
                "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn}
            },
        },
    ]
    if readers:
        extra.append(
            {
                **statement(
                    "PromotionReadersReadModels",
                    ["s3:GetObject", "s3:GetObjectVersion"],
                    [pulumi.Output.concat(bucket.arn, "/models/*")],
                ),
                "Principal": {"AWS": list(readers)},
            }
        )
    lifecycle = [
        *_expire_noncurrent(90),
        S3.BucketLifecycleConfigurationRuleArgs(
            id="data-capture-to-infrequent-access",
            status="Enabled",
            filter=S3.BucketLifecycleConfigurationRuleFilterArgs(prefix="data-capture/"),
            transitions=[
                S3.BucketLifecycleConfigurationRuleTransitionArgs(days=30, storage_class="STANDARD_IA")
            ],
            expiration=S3.BucketLifecycleConfigurationRuleExpirationArgs(days=365),
        ),
    ]
    _harden(
        name,
        bucket,
        parent,
        kms_key_arn=kms_key_arn,
        policy_statements=extra,
        lifecycle=lifecycle,
        log_bucket=logs.id,
        log_prefix=f"s3/{name}/",
    )
    return bucket
