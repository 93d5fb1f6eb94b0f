"""TrackingServer under recording mocks: managed and self-hosted modes, buckets, database, TLS."""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import pytest

from components.aws.tracking import ALB_SSL_POLICY, TrackingServer
from components.common import TrackingServerArgs
from shipway_core.config import AwsSettings
from tests.support.recording import FAKE_ACCOUNT, Recording, record
from tests.unit.aws.support import (
    DB_SECRET_ARN,
    KEY_ARN,
    REGION,
    SELF_HOSTED,
    SETTINGS,
    TAGS,
    doc,
    outputs,
    statements_by_sid,
)

ARTIFACTS = "shipway-prod-artifacts-mock"
LOGS = "shipway-prod-access-logs-mock"


@functools.cache  # settings are frozen; a recording is plain data, safe to share between tests
def build(settings: AwsSettings = SETTINGS, protect: bool = True) -> Recording:
    return record(
        lambda: TrackingServer(
            "tracking", TrackingServerArgs("prod", TAGS, protect=protect), settings, kms_key_arn=KEY_ARN
        ),
        stack="prod",
        outputs=outputs,
    )


BUCKET_CHILDREN = ("ownership", "public-access", "versioning", "encryption", "lifecycle", "policy")


def _bucket_types(name: str, logged: bool) -> set[tuple[str, str]]:
    suffix_type = {
        "ownership": "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "public-access": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "versioning": "aws:s3/bucketVersioning:BucketVersioning",
        "encryption": "aws:s3/bucketServerSideEncryptionConfiguration:"
        "BucketServerSideEncryptionConfiguration",
        "lifecycle": "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "policy": "aws:s3/bucketPolicy:BucketPolicy",
        "logging": "aws:s3/bucketLogging:BucketLogging",
    }
    parts = [*BUCKET_CHILDREN, *(("logging",) if logged else ())]
    return {("aws:s3/bucket:Bucket", name)} | {(suffix_type[p], f"{name}-{p}") for p in parts}


def test_managed_mode_children():
    rec = build()
    assert {(r.type, r.name) for r in rec.resources} == {
        ("shipway:aws:TrackingServer", "tracking"),
        ("aws:iam/role:Role", "tracking-role"),
        ("aws:iam/rolePolicy:RolePolicy", "tracking-role-policy"),
        ("aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer", "tracking-server"),
        *_bucket_types("tracking-access-logs", logged=False),
        *_bucket_types("tracking-artifacts", logged=True),
    }


def test_managed_server_uses_the_artifact_bucket_and_never_auto_registers():
    server = build().named("tracking-server").inputs
    assert server == {
        "trackingServerName": "shipway-prod-mlflow",
        "artifactStoreUri": f"s3://{ARTIFACTS}/mlflow",
        "roleArn": f"arn:aws:iam::{FAKE_ACCOUNT}:role/tracking-role",
        "trackingServerSize": "Small",
        "automaticModelRegistration": False,
        "weeklyMaintenanceWindowStart": "Sun:03:00",
        "tags": TAGS,
    }


def test_managed_role_reads_and_writes_only_the_mlflow_prefix():
    sids = statements_by_sid(build().named("tracking-role-policy"))
    assert set(sids) == {"ListArtifactPrefix", "ReadWriteArtifacts", "ArtifactKeyViaS3"}
    assert sids["ReadWriteArtifacts"]["Resource"] == [f"arn:aws:s3:::{ARTIFACTS}/mlflow/*"]
    assert sids["ReadWriteArtifacts"]["Action"] == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert sids["ListArtifactPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/*", "mlflow"]}}


def test_artifact_bucket_is_kms_encrypted_private_versioned_logged_and_tls_only():
    rec = build()
    bucket = rec.named("tracking-artifacts").inputs
    assert (bucket["bucketPrefix"], bucket["forceDestroy"], bucket["tags"]) == (
        "shipway-prod-artifacts-",
        False,
        TAGS,
    )
    sse = rec.named("tracking-artifacts-encryption").inputs["rules"][0]
    assert sse == {
        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN},
        "bucketKeyEnabled": True,
    }
    block = rec.named("tracking-artifacts-public-access").inputs
    assert [
        block[k]
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    ] == [True, True, True, True]
    assert rec.named("tracking-artifacts-ownership").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"
    }
    assert rec.named("tracking-artifacts-versioning").inputs["versioningConfiguration"] == {
        "status": "Enabled"
    }
    logging = rec.named("tracking-artifacts-logging").inputs
    assert (logging["targetBucket"], logging["targetPrefix"]) == (
        "tracking-access-logs-id",
        "s3/tracking-artifacts/",
    )
    policy = {s["Sid"]: s for s in doc(rec.named("tracking-artifacts-policy"))["Statement"]}
    assert policy["DenyInsecureTransport"] == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{ARTIFACTS}", f"arn:aws:s3:::{ARTIFACTS}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert policy["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    assert policy["DenyUploadsWithOtherKeys"]["Condition"] == {
        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY_ARN}
    }
    assert all(s["Effect"] == "Deny" for s in policy.values()), "no grants without promotion readers"
    rules = {r["id"]: r for r in rec.named("tracking-artifacts-lifecycle").inputs["rules"]}
    assert set(rules) == {
        "expire-noncurrent-versions",
        "abort-incomplete-uploads",
        "data-capture-to-infrequent-access",
    }
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 90}
    assert rules["data-capture-to-infrequent-access"]["filter"] == {"prefix": "data-capture/"}


def test_log_bucket_uses_sse_s3_because_log_delivery_cannot_use_kms():
    rec = build()
    sse = rec.named("tracking-access-logs-encryption").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    writers = {s["Sid"]: s for s in doc(rec.named("tracking-access-logs-policy"))["Statement"]}
    assert writers["S3ServerAccessLogs"]["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert writers["S3ServerAccessLogs"]["Resource"] == f"arn:aws:s3:::{LOGS}/s3/*"
    assert writers["S3ServerAccessLogs"]["Condition"] == {"StringEquals": {"aws:SourceAccount": FAKE_ACCOUNT}}
    assert "DenyInsecureTransport" in writers
    expire = {r["id"]: r for r in rec.named("tracking-access-logs-lifecycle").inputs["rules"]}["expire-logs"]
    assert expire["expiration"] == {"days": 365}


def test_promotion_readers_may_read_models_only():
    reader = f"arn:aws:iam::{FAKE_ACCOUNT}:role/shipway-test-deploy"
    rec = build(replace(SETTINGS, promotion_reader_arns=(reader,)))
    policy = {s["Sid"]: s for s in doc(rec.named("tracking-artifacts-policy"))["Statement"]}
    assert policy["PromotionReadersReadModels"] == {
        "Sid": "PromotionReadersReadModels",
        "Effect": "Allow",
        "Principal": {"AWS": [reader]},
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": [f"arn:aws:s3:::{ARTIFACTS}/models/*"],
    }


def test_self_hosted_children():
    rec = build(SELF_HOSTED)
    names = {(r.type, r.name) for r in rec.resources}
    assert names == {
        ("shipway:aws:TrackingServer", "tracking"),
        *_bucket_types("tracking-access-logs", logged=False),
        *_bucket_types("tracking-artifacts", logged=True),
        ("aws:ec2/securityGroup:SecurityGroup", "tracking-alb-sg"),
        ("aws:ec2/securityGroup:SecurityGroup", "tracking-service-sg"),
        ("aws:ec2/securityGroup:SecurityGroup", "tracking-db-sg"),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "tracking-alb-in-0"),
        ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "tracking-alb-to-service"),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "tracking-service-from-alb"),
        ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "tracking-service-to-db"),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "tracking-db-from-service"),
        ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "tracking-service-to-aws-apis"),
        ("aws:cloudwatch/logGroup:LogGroup", "tracking-logs"),
        ("aws:rds/subnetGroup:SubnetGroup", "tracking-db-subnets"),
        ("aws:rds/instance:Instance", "tracking-db"),
        ("aws:iam/role:Role", "tracking-execution-role"),
        ("aws:iam/rolePolicy:RolePolicy", "tracking-execution-role-policy"),
        ("aws:iam/role:Role", "tracking-task-role"),
        ("aws:iam/rolePolicy:RolePolicy", "tracking-task-role-policy"),
        ("aws:ecs/cluster:Cluster", "tracking-cluster"),
        ("aws:ecs/taskDefinition:TaskDefinition", "tracking-task"),
        ("aws:lb/loadBalancer:LoadBalancer", "tracking-alb"),
        ("aws:lb/targetGroup:TargetGroup", "tracking-targets"),
        ("aws:lb/listener:Listener", "tracking-https"),
        ("aws:ecs/service:Service", "tracking-service"),
    }


def test_database_is_private_encrypted_and_rds_owns_the_password():
    db = build(SELF_HOSTED).named("tracking-db").inputs
    expected = {
        "engine": "postgres",
        "storageEncrypted": True,
        "kmsKeyId": KEY_ARN,
        "publiclyAccessible": False,
        "manageMasterUserPassword": True,
        "masterUserSecretKmsKeyId": KEY_ARN,
        "multiAz": True,
        "deletionProtection": True,
        "skipFinalSnapshot": False,
        "backupRetentionPeriod": 35,
        "iamDatabaseAuthenticationEnabled": True,
        "performanceInsightsKmsKeyId": KEY_ARN,
        "vpcSecurityGroupIds": ["tracking-db-sg-id"],
        "identifier": "shipway-prod-mlflow",
    }
    assert {k: db[k] for k in expected} == expected
    assert "password" not in db


def test_alb_is_internal_and_https_only_with_a_modern_tls_policy():
    rec = build(SELF_HOSTED)
    alb = rec.named("tracking-alb").inputs
    assert (alb["internal"], alb["loadBalancerType"], alb["dropInvalidHeaderFields"]) == (
        True,
        "application",
        True,
    )
    assert alb["accessLogs"] == {"bucket": LOGS, "prefix": "alb", "enabled": True}
    assert alb["subnets"] == ["subnet-0a", "subnet-0b"]
    listeners = rec.of_type("aws:lb/listener:Listener")
    assert [(x.inputs["port"], x.inputs["protocol"]) for x in listeners] == [(443, "HTTPS")]
    assert listeners[0].inputs["sslPolicy"] == ALB_SSL_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listeners[0].inputs["certificateArn"] == SELF_HOSTED.certificate_arn


def test_network_paths_are_client_cidrs_to_alb_to_service_to_database_only():
    rec = build(SELF_HOSTED)
    ingress = {
        r.name: r.inputs for r in rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    }
    assert {
        n: (i["securityGroupId"], i.get("cidrIpv4") or i.get("referencedSecurityGroupId"), i["fromPort"])
        for n, i in ingress.items()
    } == {
        "tracking-alb-in-0": ("tracking-alb-sg-id", "10.20.0.0/16", 443),
        "tracking-service-from-alb": ("tracking-service-sg-id", "tracking-alb-sg-id", 5000),
        "tracking-db-from-service": ("tracking-db-sg-id", "tracking-service-sg-id", 5432),
    }


def test_task_gets_db_credentials_from_secrets_manager_not_from_plain_environment():
    rec = build(SELF_HOSTED)
    task = rec.named("tracking-task").inputs
    assert (task["networkMode"], task["requiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
    [container] = json.loads(task["containerDefinitions"])
    assert container["secrets"] == [
        {"name": "DB_USER", "valueFrom": f"{DB_SECRET_ARN}:username::"},
        {"name": "DB_PASSWORD", "valueFrom": f"{DB_SECRET_ARN}:password::"},
    ]
    assert {e["name"] for e in container["environment"]} == {
        "DB_HOST", "ARTIFACTS_DESTINATION", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    # MLflow's usage reports stay off (they would go to the vendor, not where the stack points).
    assert {e["name"]: e["value"] for e in container["environment"]}["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/shipway/prod/tracking"
    assert container["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    service = rec.named("tracking-service").inputs
    assert service["networkConfiguration"]["assignPublicIp"] is False
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    execution = statements_by_sid(rec.named("tracking-execution-role-policy"))
    assert execution["InjectDbCredentials"]["Resource"] == [DB_SECRET_ARN]
    assert execution["DecryptDbSecret"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    }
    assert execution["DecryptDbSecret"]["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert execution["PullServingImage"]["Resource"] == [
        f"arn:aws:ecr:{REGION}:{FAKE_ACCOUNT}:repository/mlflow"
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            replace(SETTINGS, tracking_mode="serverless"),
            "aws.trackingMode: 'serverless' is not valid; allowed: managed, self-hosted",
        ),
        (
            replace(SELF_HOSTED, certificate_arn=None),
            "aws.certificateArn: None is not valid for self-hosted tracking; "
            "the internal ALB only listens on HTTPS, "
            "set an ACM certificate ARN",
        ),
        (
            replace(SELF_HOSTED, mlflow_image=None),
            "aws.mlflowImage: None is not valid for self-hosted tracking; set the MLflow image URI",
        ),
        (
            replace(SELF_HOSTED, ingress_cidrs=()),
            "aws.ingressCidrs: [] is not valid for self-hosted tracking; "
            "list the private CIDRs allowed to reach the "
            "tracking server",
        ),
        (
            replace(SELF_HOSTED, vpc_id=None),
            "aws.vpcId: None is not valid for self-hosted tracking; set the VPC to run in",
        ),
    ],
)
def test_invalid_settings_are_rejected(settings, message):
    with pytest.raises(ValueError) as error:
        build(settings)
    assert str(error.value) == message
