"""S3 rules. Buckets are checked at stack level because in pulumi-aws 7 the controls that
matter (encryption, public access block, logging, bucket policy) are separate companion
resources: a bucket is only compliant when the right companions exist and point at it.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, Severity, StackValidationArgs, StackValidationPolicy

from policies._core import DEFAULT_ENFORCEMENT, UNKNOWN, get, items, of_type, refers_to
from policies.aws.iam_documents import conditions, document, statements

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_CONFIGS = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
# A bucket's ACL may also be its own resource (`acl` canned, or grants in `accessControlPolicy`).
ACLS = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
_PUBLIC_GRANTEES = ("http://acs.amazonaws.com/groups/global/AllUsers",
                    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
_BUCKET_KEYS = ("id", "bucket", "arn")
_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
_LOG_TARGET_ALGORITHM = "AES256"
_PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
_PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")


def _companions(
    args: StackValidationArgs, bucket: Any, types: tuple[str, ...], prop: str = "bucket"
) -> list[Any]:
    return [r for r in of_type(args, *types) if refers_to(r, prop, bucket, _BUCKET_KEYS)]


def _sse_problem(rules: list[Any]) -> str | None:
    """Why a set of SSE rules is not KMS with a customer-managed key (None when it is)."""
    for rule in rules:
        default = get(rule, "applyServerSideEncryptionByDefault")
        algorithm = get(default, "sseAlgorithm")
        key = get(default, "kmsMasterKeyId")
        if UNKNOWN in (algorithm, key):
            continue
        if algorithm not in _KMS_ALGORITHMS:
            return f"uses sseAlgorithm {algorithm!r}; use aws:kms with a customer-managed key"
        if not key:
            return (
                "uses aws:kms without a kmsMasterKeyId (the AWS-managed key); use aws:kms with a "
                "customer-managed key"
            )
    return None


def _log_target_sse_problem(rules: list[Any]) -> str | None:
    """Why a server-access-log target's SSE rules would stop log delivery (None when SSE-S3).

    S3 delivers server access logs only to buckets encrypted with SSE-S3 (AES256); a KMS
    default key on the target silently drops every log record, which loses the audit trail.
    """
    for rule in rules:
        algorithm = get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
        if algorithm is not UNKNOWN and algorithm != _LOG_TARGET_ALGORITHM:
            return (
                f"is a server access log target but uses sseAlgorithm {algorithm!r}; S3 delivers "
                f"access logs only to {_LOG_TARGET_ALGORITHM} (SSE-S3) buckets"
            )
    return None


def _sse_rules(args: StackValidationArgs, bucket: Any) -> list[Any] | None:
    """The bucket's SSE rules (inline and companions); None when it has no SSE configuration."""
    # Bucket (v6 shape) holds one inline rule; BucketV2 holds a list of configurations, each
    # with a list of rules: both are real encryption and must not be reported as missing.
    inline = get(bucket.props, "serverSideEncryptionConfiguration.rule")
    inline_rules = [inline] if inline is not None else []
    for config in items(get(bucket.props, "serverSideEncryptionConfigurations")):
        inline_rules += items(get(config, "rules"))
    configs = _companions(args, bucket, SSE_CONFIGS)
    if not configs and not inline_rules:
        return None
    rules = list(inline_rules)
    for config in configs:
        rules += items(get(config.props, "rules"))
    return rules


def _is_log_target(args: StackValidationArgs, bucket: Any) -> bool:
    """Another bucket of this stack delivers its server access logs into ``bucket``."""
    return any(refers_to(lg, "targetBucket", bucket, _BUCKET_KEYS) for lg in of_type(args, *LOGGING))


def _require_kms_encryption(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """At rest, every bucket is encrypted with a customer-managed KMS key we can revoke and audit.

    The one exception is a server-access-log target bucket of the same stack, which AWS only
    supports with SSE-S3; it must then use exactly that.
    """
    for bucket in of_type(args, *BUCKETS):
        rules = _sse_rules(args, bucket)
        if rules is None:
            report_violation(
                f"bucket '{bucket.name}' has no server-side encryption configuration", bucket.urn
            )
            continue
        problem = _log_target_sse_problem(rules) if _is_log_target(args, bucket) else _sse_problem(rules)
        if problem:
            report_violation(f"bucket '{bucket.name}' {problem}", bucket.urn)


bucket_require_kms_encryption = StackValidationPolicy(
    name="aws-s3-bucket-require-kms-encryption",
    description="S3 buckets are encrypted at rest with a customer-managed KMS key (log targets: SSE-S3).",
    validate=_require_kms_encryption,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Add an aws.s3.BucketServerSideEncryptionConfiguration for the bucket with "
        "sse_algorithm='aws:kms', kms_master_key_id=<your aws.kms.Key arn> and bucket_key_enabled=True. "
        "A bucket that receives other buckets' server access logs uses sse_algorithm='AES256' instead "
        "(the only encryption S3 log delivery supports)."
    ),
)


def _public_acl(resource: Any) -> str | None:
    """Why a separate BucketAcl resource makes its bucket public (None when it does not)."""
    acl = get(resource.props, "acl")
    if acl in _PUBLIC_ACLS:
        return f"has acl {acl!r} set by {resource.name!r}"
    for grant in items(get(resource.props, "accessControlPolicy.grants")):
        uri = get(grant, "grantee.uri")
        if uri in _PUBLIC_GRANTEES:
            return f"grants {get(grant, 'permission')} to {uri.rsplit('/', 1)[-1]} through {resource.name!r}"
    return None


def _disallow_public_access(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Model artifacts and captured inference data are never world-readable."""
    for bucket in of_type(args, *BUCKETS):
        acl = get(bucket.props, "acl")
        if acl in _PUBLIC_ACLS:
            report_violation(f"bucket '{bucket.name}' has acl {acl!r}; remove the public ACL", bucket.urn)
        for resource in _companions(args, bucket, ACLS):
            problem = _public_acl(resource)
            if problem:
                report_violation(f"bucket '{bucket.name}' {problem}; remove the public ACL", bucket.urn)
        blocks = _companions(args, bucket, (PUBLIC_ACCESS_BLOCK,))
        if not blocks:
            report_violation(f"bucket '{bucket.name}' has no public access block", bucket.urn)
            continue
        for block in blocks:
            off = [flag for flag in _PAB_FLAGS if get(block.props, flag) not in (True, UNKNOWN)]
            if off:
                report_violation(
                    f"bucket '{bucket.name}' public access block does not set {', '.join(off)} to true",
                    bucket.urn,
                )


bucket_disallow_public_access = StackValidationPolicy(
    name="aws-s3-bucket-disallow-public-access",
    description="S3 buckets block every form of public access.",
    validate=_disallow_public_access,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.CRITICAL,
    remediation_steps=(
        "Add an aws.s3.BucketPublicAccessBlock for the bucket with block_public_acls, block_public_policy, "
        "ignore_public_acls and restrict_public_buckets all True, and drop any public-read ACL."
    ),
)


def _enable_access_logging(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Access logs are the audit trail of who read which model or dataset."""
    for bucket in of_type(args, *BUCKETS):
        if _is_log_target(args, bucket) or get(bucket.props, "logging") is not None:
            continue  # the log bucket itself is not logged into itself
        if not _companions(args, bucket, LOGGING):
            report_violation(f"bucket '{bucket.name}' has no access logging", bucket.urn)


bucket_enable_access_logging = StackValidationPolicy(
    name="aws-s3-bucket-enable-access-logging",
    description="S3 buckets write server access logs to a dedicated log bucket.",
    validate=_enable_access_logging,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.MEDIUM,
    remediation_steps=(
        "Add an aws.s3.BucketLogging for the bucket with target_bucket=<the environment's access-log bucket> "
        "and a target_prefix naming the source bucket."
    ),
)


def _denies_insecure_transport(doc: Any) -> bool:
    for statement in statements(doc):
        if get(statement, "Effect") != "Deny":
            continue
        bool_conditions = conditions(statement).get("Bool", {})
        if "false" in bool_conditions.get("aws:SecureTransport", []):
            return True
    return False


def _require_secure_transport(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """TLS-only: a bucket policy denies every request made over plain HTTP."""
    for bucket in of_type(args, *BUCKETS):
        policies = _companions(args, bucket, (BUCKET_POLICY,))
        docs = [document(get(p.props, "policy")) for p in policies]
        inline = document(get(bucket.props, "policy"))
        if inline is not None:
            docs.append(inline)
        if UNKNOWN in docs:
            continue
        if not any(_denies_insecure_transport(doc) for doc in docs):
            report_violation(
                f"bucket '{bucket.name}' has no bucket policy denying requests with "
                "aws:SecureTransport false",
                bucket.urn,
            )


bucket_require_secure_transport = StackValidationPolicy(
    name="aws-s3-bucket-require-secure-transport",
    description="S3 buckets reject requests that do not use TLS.",
    validate=_require_secure_transport,
    enforcement_level=DEFAULT_ENFORCEMENT,
    severity=Severity.HIGH,
    remediation_steps=(
        "Add an aws.s3.BucketPolicy with a statement {Effect: Deny, Principal: '*', Action: 's3:*', "
        "Resource: [bucket arn, bucket arn + '/*'], Condition: {Bool: {'aws:SecureTransport': 'false'}}}."
    ),
)

POLICIES = [
    bucket_require_kms_encryption,
    bucket_disallow_public_access,
    bucket_enable_access_logging,
    bucket_require_secure_transport,
]
