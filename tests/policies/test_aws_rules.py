"""AWS rules: one property changed from the compliant baseline, exact violation message."""

from __future__ import annotations

import json

import pytest

from policies.registry import by_name
from tests.policies.baselines import DEV, OIDC_TRUST, PROD, RESOURCES
from tests.policies.cases import run_case, run_stack_case
from tests.policies.support import DELETE, Case, StackCase, check

FIX_ARN = "name the exact actions and resource ARNs"
PIN = "serve an exact registry version such as 'models:/<name>/<version>'"


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _trust(**condition: dict) -> str:
    return _policy({**OIDC_TRUST, "Condition": condition})


READ = {"Sid": "ReadModels", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::m/*"]}
DESCRIBE_VPC = {
    "Sid": "DescribeVpcForEnis",
    "Effect": "Allow",
    "Action": [
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    ],
    "Resource": "*",
}
AUD = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}

CASES = [
    Case(
        "aws-sns-topic-require-kms-key",
        "sns-topic",
        "kmsMasterKeyId",
        DELETE,
        ["kmsMasterKeyId is not set; encrypt the topic with a customer-managed KMS key"],
    ),
    # IAM
    Case(
        "aws-iam-policy-disallow-wildcards",
        "iam-policy",
        "policy",
        _policy({**READ, "Action": "s3:*"}),
        [f"statement ReadModels allows wildcard action 's3:*'; {FIX_ARN}"],
    ),
    Case(
        "aws-iam-policy-disallow-wildcards",
        "iam-policy",
        "policy",
        _policy({**READ, "Action": ["*"]}),
        [f"statement ReadModels allows wildcard action '*'; {FIX_ARN}"],
    ),
    Case(
        "aws-iam-policy-disallow-wildcards",
        "iam-policy",
        "policy",
        _policy({**READ, "Resource": "*"}),
        [f"statement ReadModels allows s3:GetObject on Resource '*'; {FIX_ARN}"],
    ),
    # The ENI-placement Describe* set is resourceless in AWS; anything added to it is not.
    Case(
        "aws-iam-policy-disallow-wildcards",
        "iam-policy",
        "policy",
        _policy(READ, {**DESCRIBE_VPC, "Action": [*DESCRIBE_VPC["Action"], "ec2:CreateNetworkInterface"]}),
        [
            "statement DescribeVpcForEnis allows ec2:CreateNetworkInterface, ec2:DescribeDhcpOptions, "
            "ec2:DescribeNetworkInterfaces, ec2:DescribeSecurityGroups, ec2:DescribeSubnets, "
            f"ec2:DescribeVpcs on Resource '*'; {FIX_ARN}"
        ],
    ),
    Case(
        "aws-iam-policy-disallow-wildcards",
        "iam-policy",
        "policy",
        _policy(READ, {**DESCRIBE_VPC, "Action": "ec2:Describe*"}),
        [f"statement DescribeVpcForEnis allows ec2:Describe* on Resource '*'; {FIX_ARN}"],
    ),
    Case(
        "aws-iam-role-disallow-full-access",
        "role-attachment",
        "policyArn",
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        [
            "attaches managed policy 'AmazonS3FullAccess'; attach a least-privilege "
            "customer-managed policy instead"
        ],
    ),
    Case(
        "aws-iam-role-disallow-full-access",
        "deploy-role",
        "managedPolicyArns",
        ["arn:aws:iam::aws:policy/AdministratorAccess"],
        [
            "attaches managed policy 'AdministratorAccess'; attach a least-privilege "
            "customer-managed policy instead"
        ],
    ),
    Case(
        "aws-iam-role-restrict-oidc-trust",
        "deploy-role",
        "assumeRolePolicy",
        _trust(
            StringEquals=AUD, StringLike={"token.actions.githubusercontent.com:sub": "repo:acme/*:ref:main"}
        ),
        [
            "trust policy allows subject 'repo:acme/*:ref:main'; pin 'repo:<owner>/<name>:<ref or "
            "environment>'"
        ],
    ),
    Case(
        "aws-iam-role-restrict-oidc-trust",
        "deploy-role",
        "assumeRolePolicy",
        _trust(StringLike={"token.actions.githubusercontent.com:sub": "repo:acme/shipway:environment:prod"}),
        ["trust policy does not require token.actions.githubusercontent.com:aud = 'sts.amazonaws.com'"],
    ),
    Case(
        "aws-iam-role-restrict-oidc-trust",
        "deploy-role",
        "assumeRolePolicy",
        _trust(StringEquals=AUD),
        ["trust policy does not restrict token.actions.githubusercontent.com:sub to a repository"],
    ),
    # KMS, Secrets Manager, logs, trail
    Case(
        "aws-kms-key-enable-rotation",
        "kms-key",
        "enableKeyRotation",
        False,
        ["enableKeyRotation is not true; enable yearly automatic rotation"],
    ),
    Case(
        "aws-secretsmanager-secret-require-kms-key",
        "sm-secret",
        "kmsKeyId",
        DELETE,
        ["kmsKeyId is not set; encrypt the secret with a customer-managed KMS key"],
    ),
    Case(
        "aws-cloudwatch-loggroup-require-retention",
        "log-group",
        "retentionInDays",
        30,
        ["retentionInDays is 30 days; this environment keeps logs at least 365 days"],
    ),
    Case(
        "aws-cloudwatch-loggroup-require-retention",
        "log-group",
        "retentionInDays",
        DELETE,
        ["retentionInDays is not set; this environment keeps logs at least 365 days"],
    ),
    Case(
        "aws-cloudwatch-loggroup-require-kms-key",
        "log-group",
        "kmsKeyId",
        DELETE,
        ["kmsKeyId is not set; encrypt the log group with a customer-managed KMS key"],
    ),
    Case(
        "aws-cloudtrail-trail-enable-data-events",
        "trail",
        "advancedEventSelectors",
        DELETE,
        ["the trail records no data events; add S3 object (and SageMaker) data event selectors"],
    ),
    Case(
        "aws-cloudtrail-trail-enable-data-events",
        "trail",
        "enableLogFileValidation",
        False,
        ["enableLogFileValidation is not true; enable digest files so tampering is detectable"],
    ),
    # ECR
    Case(
        "aws-ecr-repository-require-kms-encryption",
        "ecr-repository",
        "encryptionConfigurations",
        [{"encryptionType": "AES256"}],
        ["encryptionConfigurations does not use KMS with a customer-managed kmsKey"],
    ),
    Case(
        "aws-ecr-repository-require-immutable-tags",
        "ecr-repository",
        "imageTagMutability",
        "MUTABLE",
        ["imageTagMutability is 'MUTABLE'; use 'IMMUTABLE'"],
    ),
    # RDS, load balancer
    Case(
        "aws-rds-instance-require-kms-encryption",
        "rds",
        "storageEncrypted",
        False,
        ["storageEncrypted is not true; encrypt the instance storage"],
    ),
    Case(
        "aws-rds-instance-require-kms-encryption",
        "rds",
        "kmsKeyId",
        DELETE,
        ["kmsKeyId is not set; encrypt with a customer-managed KMS key"],
    ),
    Case(
        "aws-rds-instance-disallow-public-access",
        "rds",
        "publiclyAccessible",
        True,
        ["publiclyAccessible is true; keep the instance in private subnets"],
    ),
    Case(
        "aws-lb-listener-require-tls",
        "listener",
        "protocol",
        "HTTP",
        ["protocol is 'HTTP'; use HTTPS/TLS or redirect every request to HTTPS"],
    ),
    Case(
        "aws-lb-listener-require-tls",
        "listener",
        "sslPolicy",
        "ELBSecurityPolicy-2016-08",
        [
            "sslPolicy is 'ELBSecurityPolicy-2016-08'; use a TLS 1.2+ policy such as "
            "'ELBSecurityPolicy-TLS13-1-2-2021-06'"
        ],
    ),
    # SageMaker
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model",
        "primaryContainer.environment.SHIPWAY_MODEL_URI",
        "models:/churn@champion",
        [
            f"primaryContainer.environment.SHIPWAY_MODEL_URI 'models:/churn@champion' is a floating alias "
            f"'champion'; {PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model",
        "primaryContainer.environment.SHIPWAY_MODEL_URI",
        "models:/churn/latest",
        [
            f"primaryContainer.environment.SHIPWAY_MODEL_URI 'models:/churn/latest' is a moving reference "
            f"'latest', not an exact version; {PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model",
        "primaryContainer.modelDataUrl",
        "s3://shipway-prod-models/churn/model.tar.gz",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/churn/model.tar.gz' is a raw "
            "artifact path that is not models/churn/3/ as pinned by SHIPWAY_MODEL_URI 'models:/churn/3'; "
            f"{PIN}"
        ],
    ),
    # A versioned artifact path is accepted only together with the same exact env pin.
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.environment.SHIPWAY_MODEL_URI",
        DELETE,
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/churn/3/model.tar.gz' is a raw "
            f"artifact path that bypasses the registry; {PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.environment.SHIPWAY_MODEL_URI",
        "models:/churn/4",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/churn/3/model.tar.gz' is a raw "
            "artifact path that is not models/churn/4/ as pinned by SHIPWAY_MODEL_URI 'models:/churn/4'; "
            f"{PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.modelDataUrl",
        "s3://shipway-prod-models/models/churn/30/model.tar.gz",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/churn/30/model.tar.gz' is a raw "
            "artifact path that is not models/churn/3/ as pinned by SHIPWAY_MODEL_URI 'models:/churn/3'; "
            f"{PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.modelDataUrl",
        "s3://shipway-prod-models/models/fraud/3/model.tar.gz",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/fraud/3/model.tar.gz' is a raw "
            "artifact path that is not models/churn/3/ as pinned by SHIPWAY_MODEL_URI 'models:/churn/3'; "
            f"{PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.modelDataUrl",
        "s3://shipway-prod-models/models/churn/latest/model.tar.gz",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/churn/latest/model.tar.gz' is a "
            "raw artifact path that is not models/churn/3/ as pinned by SHIPWAY_MODEL_URI 'models:/churn/3'; "
            f"{PIN}"
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model-artifact",
        "primaryContainer.environment.SHIPWAY_MODEL_URI",
        "models:/churn@champion",
        [
            "primaryContainer.modelDataUrl 's3://shipway-prod-models/models/churn/3/model.tar.gz' is a raw "
            f"artifact path that bypasses the registry; {PIN}",
            "primaryContainer.environment.SHIPWAY_MODEL_URI 'models:/churn@champion' is a floating alias "
            f"'champion'; {PIN}",
        ],
    ),
    Case(
        "aws-sagemaker-model-pin-registry-version",
        "sm-model",
        "primaryContainer.environment",
        DELETE,
        [
            "primaryContainer names no model; serve an exact registry version through modelPackageName or "
            "SHIPWAY_MODEL_URI such as 'models:/<name>/<version>'"
        ],
    ),
    Case(
        "aws-sagemaker-endpointconfig-require-kms-key",
        "sm-endpoint-config",
        "kmsKeyArn",
        DELETE,
        ["kmsKeyArn is not set; encrypt endpoint storage with a customer-managed KMS key"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-require-kms-key",
        "sm-endpoint-config",
        "dataCaptureConfig.kmsKeyId",
        DELETE,
        ["dataCaptureConfig.kmsKeyId is not set; encrypt captured payloads with a customer-managed KMS key"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-enable-data-capture",
        "sm-endpoint-config",
        "dataCaptureConfig.enableCapture",
        False,
        ["dataCaptureConfig.enableCapture is not true; prod endpoints capture requests"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-enable-data-capture",
        "sm-endpoint-config",
        "dataCaptureConfig.initialSamplingPercentage",
        0,
        ["dataCaptureConfig.initialSamplingPercentage is 0; capture a positive share of requests"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-enable-data-capture",
        "sm-endpoint-config",
        "dataCaptureConfig.captureOptions",
        [{"captureMode": "Input"}],
        ["dataCaptureConfig.captureOptions does not capture both Input and Output"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-require-min-instances",
        "sm-endpoint-config",
        "productionVariants.0.initialInstanceCount",
        1,
        ["variant 'primary' has initialInstanceCount 1; prod runs at least 2"],
    ),
    Case(
        "aws-sagemaker-endpointconfig-require-min-instances",
        "sm-endpoint-config",
        "productionVariants.0.serverlessConfig",
        {"maxConcurrency": 5, "memorySizeInMb": 2048},
        ["variant 'primary' is serverless; prod variants run provisioned instances"],
    ),
    Case(
        "aws-sagemaker-endpoint-attach-rollback-alarms",
        "sm-endpoint",
        "deploymentConfig.autoRollbackConfiguration.alarms",
        [{"alarmName": "churn-prod-latency-p99"}, {"alarmName": "churn-prod-error-rate"}],
        [
            "deploymentConfig.autoRollbackConfiguration has no drift alarm; attach the latency, "
            "error and drift alarms"
        ],
    ),
]

STACK_CASES = [
    StackCase(
        "aws-s3-bucket-require-kms-encryption",
        "aws",
        "models-sse",
        None,
        None,
        [("bucket 'models' has no server-side encryption configuration", "models")],
    ),
    StackCase(
        "aws-s3-bucket-require-kms-encryption",
        "aws",
        "models-sse",
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm",
        "AES256",
        [("bucket 'models' uses sseAlgorithm 'AES256'; use aws:kms with a customer-managed key", "models")],
    ),
    StackCase(
        "aws-s3-bucket-require-kms-encryption",
        "aws",
        "models-sse",
        "rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId",
        DELETE,
        [
            (
                "bucket 'models' uses aws:kms without a kmsMasterKeyId (the AWS-managed key); use "
                "aws:kms with a "
                "customer-managed key",
                "models",
            )
        ],
    ),
    # The access-log target may (and must) use SSE-S3; only because it receives models' logs.
    StackCase(
        "aws-s3-bucket-require-kms-encryption",
        "aws",
        "access-logs-sse",
        "rules.0.applyServerSideEncryptionByDefault",
        {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:eu-west-1:000000000000:key/x"},
        [
            (
                "bucket 'access-logs' is a server access log target but uses sseAlgorithm 'aws:kms'; "
                "S3 delivers access logs only to AES256 (SSE-S3) buckets",
                "access-logs",
            )
        ],
    ),
    StackCase(
        "aws-s3-bucket-require-kms-encryption",
        "aws",
        "models-logging",
        None,
        None,
        [
            (
                "bucket 'access-logs' uses sseAlgorithm 'AES256'; use aws:kms with a customer-managed key",
                "access-logs",
            )
        ],
    ),
    StackCase(
        "aws-s3-bucket-disallow-public-access",
        "aws",
        "models-pab",
        None,
        None,
        [("bucket 'models' has no public access block", "models")],
    ),
    StackCase(
        "aws-s3-bucket-disallow-public-access",
        "aws",
        "models-pab",
        "blockPublicPolicy",
        False,
        [("bucket 'models' public access block does not set blockPublicPolicy to true", "models")],
    ),
    StackCase(
        "aws-s3-bucket-disallow-public-access",
        "aws",
        "models",
        "acl",
        "public-read",
        [("bucket 'models' has acl 'public-read'; remove the public ACL", "models")],
    ),
    # Re-pointed at another bucket, the logging config no longer covers 'models' (the log bucket
    # itself stays exempt because it is still the target).
    StackCase(
        "aws-s3-bucket-enable-access-logging",
        "aws",
        "models-logging",
        "bucket",
        "shipway-prod-other",
        [("bucket 'models' has no access logging", "models")],
    ),
    StackCase(
        "aws-s3-bucket-require-secure-transport",
        "aws",
        "models-tls",
        None,
        None,
        [("bucket 'models' has no bucket policy denying requests with aws:SecureTransport false", "models")],
    ),
    StackCase(
        "aws-s3-bucket-require-secure-transport",
        "aws",
        "models-tls",
        "policy",
        _policy(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "true"}},
            }
        ),
        [("bucket 'models' has no bucket policy denying requests with aws:SecureTransport false", "models")],
    ),
    StackCase(
        "aws-sagemaker-endpoint-require-autoscaling",
        "aws",
        "churn-scaling",
        None,
        None,
        [("endpoint 'churn-endpoint' has no application autoscaling target", "churn-endpoint")],
    ),
    StackCase(
        "aws-sagemaker-endpoint-require-autoscaling",
        "aws",
        "churn-scaling",
        "minCapacity",
        1,
        [("endpoint 'churn-endpoint' autoscaling minCapacity is 1; prod keeps at least 2", "churn-endpoint")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resource_rule_reports_the_mutation(case: Case) -> None:
    run_case(case)


@pytest.mark.parametrize("case", STACK_CASES, ids=lambda c: c.id)
def test_stack_rule_reports_the_mutation(case: StackCase) -> None:
    run_stack_case(case)


def test_access_keys_are_reported_whatever_their_inputs() -> None:
    policy = by_name("aws-iam-accesskey-disallow-creation")
    assert check(policy, "aws:iam/accessKey:AccessKey", {"user": "ci"}) == [
        "aws:iam/accessKey:AccessKey creates a long-lived credential; use an IAM role assumed "
        "through OIDC instead"
    ]
    assert check(policy, "aws:iam/user:User", {"name": "ci"}) == []


@pytest.mark.parametrize(
    "name",
    [
        "aws-sagemaker-endpointconfig-require-min-instances",
        "aws-sagemaker-endpointconfig-enable-data-capture",
    ],
)
def test_prod_only_sagemaker_rules_do_not_apply_in_dev(name: str) -> None:
    base = RESOURCES["sm-endpoint-config"]
    props = {**base.props, "productionVariants": [{"variantName": "primary", "initialInstanceCount": 1}]}
    props.pop("dataCaptureConfig")
    assert check(by_name(name), base.type, props, config=DEV) == []
    assert check(by_name(name), base.type, props, config=PROD) != []


def test_log_retention_minimum_comes_from_the_environment_config() -> None:
    base = RESOURCES["log-group"]
    props = {**base.props, "retentionInDays": 30}
    policy = by_name("aws-cloudwatch-loggroup-require-retention")
    assert check(policy, base.type, props, config=DEV) == []
    assert check(policy, base.type, {**props, "retentionInDays": 0}, config=PROD) == []  # 0 = never expire


def test_http_listener_that_only_redirects_to_https_passes() -> None:
    base = RESOURCES["listener"]
    props = {
        **base.props,
        "protocol": "HTTP",
        "port": 80,
        "defaultActions": [
            {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
        ],
    }
    assert check(by_name("aws-lb-listener-require-tls"), base.type, props) == []


def test_versioned_model_package_arn_is_an_exact_pin() -> None:
    base = RESOURCES["sm-model"]
    container = {
        "image": "img",
        "modelPackageName": "arn:aws:sagemaker:eu-west-1:000000000000:model-package/churn/3",
    }
    assert (
        check(
            by_name("aws-sagemaker-model-pin-registry-version"),
            base.type,
            {**base.props, "primaryContainer": container},
        )
        == []
    )
    group = {
        **container,
        "modelPackageName": "arn:aws:sagemaker:eu-west-1:000000000000:model-package-group/churn",
    }
    assert check(
        by_name("aws-sagemaker-model-pin-registry-version"),
        base.type,
        {**base.props, "primaryContainer": group},
    ) == [
        "primaryContainer.modelPackageName "
        "'arn:aws:sagemaker:eu-west-1:000000000000:model-package-group/churn' "
        f"is a moving reference 'churn', not an exact version; {PIN}"
    ]


def test_sagemaker_eni_describe_actions_may_use_resource_star() -> None:
    """SageMaker in a VPC needs these ec2:Describe* calls, which AWS only authorises on '*'."""
    base = RESOURCES["iam-policy"]
    props = {**base.props, "policy": _policy(READ, DESCRIBE_VPC)}
    assert check(by_name("aws-iam-policy-disallow-wildcards"), base.type, props) == []


def test_cloudwatch_metric_reads_may_use_resource_star_but_nothing_else_of_cloudwatch() -> None:
    """Managed Grafana's CloudWatch data source (components/aws/observability.py) reads metrics with
    actions AWS authorises only on '*'; an alarm change beside them is still flagged."""
    base = RESOURCES["iam-policy"]
    rule = by_name("aws-iam-policy-disallow-wildcards")
    reads = {
        "Sid": "ReadCloudWatchMetrics",
        "Effect": "Allow",
        "Action": ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"],
        "Resource": "*",
    }
    assert check(rule, base.type, {**base.props, "policy": _policy(READ, reads)}) == []
    delete = {**reads, "Action": [*reads["Action"], "cloudwatch:DeleteAlarms"]}
    assert check(rule, base.type, {**base.props, "policy": _policy(READ, delete)}) == [
        "statement ReadCloudWatchMetrics allows cloudwatch:DeleteAlarms, cloudwatch:GetMetricData, "
        f"cloudwatch:GetMetricStatistics, cloudwatch:ListMetrics on Resource '*'; {FIX_ARN}"
    ]
