"""Shared fixtures of the AWS component tests: settings, args and realistic mock outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pulumi.runtime import MockResourceArgs

from shipway_core.config import AwsSettings
from tests.support.recording import FAKE_ACCOUNT, Recorded

REGION = "eu-west-1"  # what RecordingMocks' getRegion answers
TAGS = {
    "owner": "ml-platform",
    "cost-center": "cc-42",
    "environment": "prod",
    "data-classification": "confidential",
    "managed-by": "shipway",
}
KEY_ARN = f"arn:aws:kms:{REGION}:{FAKE_ACCOUNT}:key/mock"
IMAGE = f"{FAKE_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shipway-serving:1.4.0"
SETTINGS = AwsSettings(
    vpc_id="vpc-0fake",
    subnet_ids=("subnet-0a", "subnet-0b"),
    serving_image=IMAGE,
    github_repository="acme/shipway-models",
)
SELF_HOSTED = replace(
    SETTINGS,
    tracking_mode="self-hosted",
    certificate_arn=f"arn:aws:acm:{REGION}:{FAKE_ACCOUNT}:certificate/mock",
    mlflow_image=f"{FAKE_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlflow:3.17.2",
    ingress_cidrs=("10.20.0.0/16",),
)
DB_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{FAKE_ACCOUNT}:secret:rds!db-mock"

# Resource types that carry no tags in the AWS API (they hang off a tagged parent).
UNTAGGABLE = frozenset(
    {
        "aws:iam/rolePolicy:RolePolicy",
        "aws:kms/keyPolicy:KeyPolicy",
        "aws:kms/alias:Alias",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketLogging:BucketLogging",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:secretsmanager/secretVersion:SecretVersion",
        "aws:secretsmanager/secretRotation:SecretRotation",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:amp/alertManagerDefinition:AlertManagerDefinition",
        "aws:cloudwatch/logMetricFilter:LogMetricFilter",
        "aws:appautoscaling/policy:Policy",
    }
)


def outputs(args: MockResourceArgs) -> dict[str, Any]:
    """Computed outputs the real provider returns and components read."""
    name = args.name
    if args.typ == "aws:s3/bucket:Bucket":
        physical = f"{args.inputs.get('bucketPrefix', name)}mock"
        return {"bucket": physical, "arn": f"arn:aws:s3:::{physical}"}
    if args.typ == "aws:rds/instance:Instance":
        return {"address": f"{name}.mock.internal", "masterUserSecrets": [{"secretArn": DB_SECRET_ARN}]}
    if args.typ == "aws:lb/loadBalancer:LoadBalancer":
        return {"dnsName": f"internal-{name}.mock.internal"}
    if args.typ == "aws:amp/workspace:Workspace":
        return {
            "prometheusEndpoint": "https://mock-aps/workspaces/ws-mock/",
            "arn": f"arn:aws:aps:{REGION}:{FAKE_ACCOUNT}:workspace/ws-mock",
        }
    if args.typ == "aws:grafana/workspace:Workspace":
        return {"endpoint": "g-mock.grafana-workspace.mock"}
    if args.typ == "aws:kms/key:Key":
        return {"keyId": "mock-key-id", "arn": KEY_ARN}
    if args.typ == "aws:secretsmanager/secret:Secret":
        return {"arn": f"arn:aws:secretsmanager:{REGION}:{FAKE_ACCOUNT}:secret:{args.inputs['name']}-AbCdEf"}
    if args.typ == "aws:iam/role:Role":
        role = args.inputs.get("name") or name
        return {"arn": f"arn:aws:iam::{FAKE_ACCOUNT}:role/{role}"}
    return {}


def doc(resource: Recorded, prop: str = "policy") -> dict[str, Any]:
    """A recorded policy document, parsed."""
    return json.loads(resource.inputs[prop])


def statements_by_sid(resource: Recorded, prop: str = "policy") -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in doc(resource, prop)["Statement"]}
