"""Shared helpers of the AWS components: tags, naming, account facts and IAM documents.

IAM documents are built as plain dicts and serialised with ``pulumi.Output.json_dumps`` so
they can hold Outputs (ARNs) without creating anything inside ``.apply()`` and so recording
mocks see the exact JSON AWS would receive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.common import validate_tags
from shipway_core.config import AwsSettings

# Actions AWS authorises only against "*" (the service authorization reference lists no resource
# type for them). They are the single place a "*" resource may appear, and every such statement
# is pinned to the stack's region by condition. Everything else names its resources.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ecr:GetAuthorizationToken",
        # CloudWatch metric reads (the Grafana role's dashboard data source): no resource-level permissions
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:ListMetrics",
    }
)

# SageMaker, RDS and ALB names are at most 63 characters; the longest name we derive is the
# endpoint config "shipway-<env>-<model>-v<version>" (+ "-p99-latency" only on alarms, no limit).
_MAX_SAGEMAKER_NAME = 63


def prefix(environment: str) -> str:
    """Physical name prefix of everything in one environment; IAM scopes rely on it."""
    return f"shipway-{environment}"


def aws_tags(tags: Mapping[str, str], **extra: str) -> dict[str, str]:
    """Compliance tags plus resource-specific ones (``model_name`` -> ``model-name``)."""
    validate_tags(tags)
    merged = dict(tags)
    merged.update({key.replace("_", "-"): value for key, value in extra.items()})
    return merged


def validate_sagemaker_name(field: str, value: str) -> None:
    """SageMaker rejects names over 63 chars only at deploy time; fail at preview instead."""
    if len(value) > _MAX_SAGEMAKER_NAME:
        raise ValueError(
            f"{field}: {value!r} is {len(value)} characters; SageMaker allows at most "
            f"{_MAX_SAGEMAKER_NAME}, use a shorter model name"
        )


def validate_network(settings: AwsSettings, component: str) -> None:
    """Endpoints and self-hosted tracking run inside the VPC: no VPC, no deployment."""
    if not settings.vpc_id:
        raise ValueError(f"aws.vpcId: None is not valid for {component}; set the VPC to run in")
    if len(settings.subnet_ids) < 2:
        raise ValueError(
            f"aws.subnetIds: {list(settings.subnet_ids)!r} is not valid for {component}; "
            "use at least 2 private subnets in different availability zones"
        )


@dataclass(frozen=True)
class AccountFacts:
    """Account id, region and partition of the provider the component inherited."""

    account_id: pulumi.Output[str]
    region: pulumi.Output[str]
    partition: pulumi.Output[str]

    def arn(
        self, service: str, resource: str, *, regional: bool = True, account: bool = True
    ) -> pulumi.Output[str]:
        """``arn:<partition>:<service>:<region>:<account>:<resource>`` without string guessing."""
        return pulumi.Output.all(self.partition, self.region, self.account_id).apply(
            lambda p: f"arn:{p[0]}:{service}:{p[1] if regional else ''}:{p[2] if account else ''}:{resource}"
        )


def account_facts(parent: pulumi.Resource) -> AccountFacts:
    """Ask the inherited provider (never the ambient environment) where we are."""
    opts = pulumi.InvokeOutputOptions(parent=parent)
    identity = aws.get_caller_identity_output(opts=opts)
    region = aws.get_region_output(opts=opts)
    partition = aws.get_partition_output(opts=opts)
    return AccountFacts(account_id=identity.account_id, region=region.region, partition=partition.partition)


def statement(
    sid: str,
    actions: Sequence[str],
    resources: Sequence[Any],
    condition: Mapping[str, Any] | None = None,
    effect: str = "Allow",
) -> dict[str, Any]:
    """One IAM statement; ``sid`` documents why it exists in the JSON AWS shows reviewers."""
    stmt: dict[str, Any] = {
        "Sid": sid,
        "Effect": effect,
        "Action": sorted(actions),
        "Resource": list(resources),
    }
    if condition:
        stmt["Condition"] = dict(condition)
    return stmt


def unscopable_statement(sid: str, actions: Sequence[str], region: pulumi.Input[str]) -> dict[str, Any]:
    """The only allowed "*" resource: actions AWS cannot scope, fenced to the stack's region."""
    unknown = sorted(set(actions) - UNSCOPABLE_ACTIONS)
    if unknown:
        raise ValueError(f"actions: {unknown} support resource-level permissions; name their resources")
    return statement(sid, actions, ["*"], {"StringEquals": {"aws:RequestedRegion": region}})


def policy_json(statements: Sequence[Mapping[str, Any]]) -> pulumi.Output[str]:
    """An IAM policy document as JSON (Outputs inside are resolved, never applied into resources)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust(service: str, account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """Trust one AWS service, only on behalf of this account (confused-deputy guard)."""
    return policy_json(
        [
            {
                "Sid": "AssumedByService",
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["sts:AssumeRole"],
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ]
    )


def scoped_role(
    name: str,
    *,
    service: str,
    description: str,
    statements: Sequence[Mapping[str, Any]],
    tags: Mapping[str, str],
    facts: AccountFacts,
    parent: pulumi.Resource,
    role_name: str | None = None,
) -> aws.iam.Role:
    """One role per component: a service trust plus one inline, resource-scoped policy.

    Inline (not managed) so the policy lives and dies with the role and no other principal can
    be attached to it; never AWS ``*FullAccess`` managed policies.
    """
    role = aws.iam.Role(
        name,
        name=role_name,
        description=description,
        assume_role_policy=service_trust(service, facts.account_id),
        max_session_duration=3600,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.iam.RolePolicy(
        f"{name}-policy",
        role=role.id,
        policy=policy_json(statements),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return role


def kms_use_statement(
    sid: str, key_arn: pulumi.Input[str], via_service: pulumi.Input[str], *, encrypt: bool = True
) -> dict[str, Any]:
    """Use of the platform key, only through the AWS service that needs it (kms:ViaService)."""
    actions = ["kms:Decrypt", "kms:DescribeKey"]
    if encrypt:
        actions += ["kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    return statement(sid, actions, [key_arn], {"StringEquals": {"kms:ViaService": via_service}})


_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$"
)


def ecr_repository_arn(image: str, partition: str = "aws") -> str | None:
    """The ECR repository ARN an image lives in, or None for images outside ECR."""
    match = _ECR_IMAGE.match(image)
    if match is None:
        return None
    return f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"


def ecr_pull_statements(image: str, facts: AccountFacts) -> list[dict[str, Any]]:
    """Pull one repository's images; the token call is account-wide by AWS design."""
    repo = ecr_repository_arn(image)
    if repo is None:
        return []
    return [
        statement(
            "PullServingImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [repo],
        ),
        unscopable_statement("EcrLogin", ["ecr:GetAuthorizationToken"], facts.region),
    ]
