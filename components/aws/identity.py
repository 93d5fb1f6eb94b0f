"""GitHub Actions -> AWS without long-lived keys: the OIDC provider and a deploy role per env.

The deploy role is trusted only by ``repo:<owner>/<name>:environment:<env>`` tokens (a GitHub
*environment*, so prod deploys also pass that environment's protection rules), audience
``sts.amazonaws.com``. Its permissions are the **promotion scope**: create/delete the versioned
SageMaker models and endpoint configs of this environment, update its endpoints, pass only the
endpoints' execution roles, copy packaged models into ``models/`` of the artifact bucket (and
read them from the source environment's bucket), read the rollback alarms and the registry, and
this environment's stack in the Pulumi S3 state backend with its KMS key (``aws.stateBucket``,
``aws.stateKeyArn``). ``tests/unit/aws/test_deploy_role_calls.py`` checks each permission against
the calls its workflows make (``tests/support/aws_calls.py``).
Changing the platform's shape (keys, roles, buckets, networks) is not in that scope: it is a
reviewed change applied by the platform admin role, so a compromised workflow cannot widen
its own permissions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws._base import (
    AccountFacts,
    account_facts,
    aws_tags,
    kms_use_statement,
    policy_json,
    prefix,
    statement,
)
from shipway_core.config import AwsSettings

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# docs/gitops.md: PULUMI_BACKEND_URL=s3://<stateBucket>/shipway; the Pulumi project is "shipway".
STATE_PREFIX = "shipway"
PULUMI_PROJECT = "shipway"
# components/aws/tracking.py: the MLflow artifact store is s3://<artifact bucket>/mlflow.
MLFLOW_ARTIFACT_PREFIX = "mlflow"
# MLflow registry calls a promotion makes against SageMaker managed MLflow.
_REGISTRY_ACTIONS = (
    "sagemaker-mlflow:AccessUI",
    "sagemaker-mlflow:GetDownloadURIForModelVersionArtifacts",
    "sagemaker-mlflow:GetModelVersion",
    "sagemaker-mlflow:GetModelVersionByAlias",
    "sagemaker-mlflow:GetRegisteredModel",
    "sagemaker-mlflow:SearchModelVersions",
    "sagemaker-mlflow:SetModelVersionTag",
    "sagemaker-mlflow:SetRegisteredModelAlias",
)


@dataclass
class DeployIdentityArgs:
    """Which environment CI deploys to (the repository comes from ``aws.githubRepository``)."""

    environment: str
    tags: Mapping[str, str]


def github_subject(repository: str, environment: str) -> str:
    """The only token subject the deploy role accepts."""
    return f"repo:{repository}:environment:{environment}"


class DeployIdentity(pulumi.ComponentResource):
    """GitHub OIDC provider (optional, one per account) and the environment's deploy role."""

    role_arn: pulumi.Output[str]
    """Put in the workflow's ``aws-actions/configure-aws-credentials`` ``role-to-assume``."""
    oidc_provider_arn: pulumi.Output[str]
    """The account's GitHub OIDC provider (created here or pre-existing)."""
    subject: pulumi.Output[str]
    """The GitHub token subject the role trusts."""

    def __init__(
        self,
        name: str,
        args: DeployIdentityArgs,
        settings: AwsSettings,
        *,
        artifact_bucket: pulumi.Input[str],
        kms_key_arn: pulumi.Input[str],
        endpoint_role_arns: Sequence[pulumi.Input[str]] = (),
        tracking_server_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("shipway:aws:DeployIdentity", name, None, opts)
        repository = settings.github_repository
        if not repository:
            raise ValueError(
                "aws.githubRepository: None is not valid; set owner/name of the repository "
                "whose workflows deploy this environment"
            )
        facts = account_facts(self)
        tags = aws_tags(args.tags)
        if settings.create_oidc_provider:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_lists=["sts.amazonaws.com"],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.oidc_provider_arn = provider.arn
        else:
            self.oidc_provider_arn = pulumi.Output.concat(
                "arn:", facts.partition, ":iam::", facts.account_id, f":oidc-provider/{GITHUB_OIDC_HOST}"
            )
        self.subject = pulumi.Output.from_input(github_subject(repository, args.environment))
        trust = policy_json(
            [
                {
                    "Sid": "GithubEnvironmentOnly",
                    "Effect": "Allow",
                    "Principal": {"Federated": self.oidc_provider_arn},
                    "Action": ["sts:AssumeRoleWithWebIdentity"],
                    "Condition": {
                        "StringEquals": {
                            f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                            f"{GITHUB_OIDC_HOST}:sub": github_subject(repository, args.environment),
                        }
                    },
                }
            ]
        )
        role = aws.iam.Role(
            f"{name}-role",
            name=f"{prefix(args.environment)}-deploy",
            description=f"GitHub Actions deploys of {repository} to {args.environment} (promotion scope)",
            assume_role_policy=trust,
            max_session_duration=3600,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=policy_json(
                self._statements(
                    args.environment,
                    settings,
                    facts,
                    artifact_bucket,
                    kms_key_arn,
                    endpoint_role_arns,
                    tracking_server_arn,
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_arn = role.arn
        self.register_outputs(
            {"role_arn": self.role_arn, "oidc_provider_arn": self.oidc_provider_arn, "subject": self.subject}
        )

    @staticmethod
    def _statements(
        env: str,
        settings: AwsSettings,
        facts: AccountFacts,
        artifact_bucket: pulumi.Input[str],
        kms_key_arn: pulumi.Input[str],
        endpoint_role_arns: Sequence[pulumi.Input[str]],
        tracking_server_arn: pulumi.Input[str] | None,
    ) -> list[dict[str, Any]]:
        own = f"{prefix(env)}-*"
        bucket = pulumi.Output.concat("arn:", facts.partition, ":s3:::", artifact_bucket)
        s3_service = pulumi.Output.concat("s3.", facts.region, ".amazonaws.com")
        statements = [
            statement(
                "VersionedModelsAndConfigs",
                [
                    "sagemaker:AddTags",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateModel",
                    "sagemaker:DeleteEndpointConfig",
                    "sagemaker:DeleteModel",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DescribeModel",
                    "sagemaker:ListTags",
                ],
                [facts.arn("sagemaker", f"model/{own}"), facts.arn("sagemaker", f"endpoint-config/{own}")],
            ),
            statement(
                "UpdateAndVerifyEndpoints",
                [
                    "sagemaker:AddTags",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:InvokeEndpoint",
                    "sagemaker:ListTags",
                    "sagemaker:UpdateEndpoint",
                ],
                [facts.arn("sagemaker", f"endpoint/{own}")],
            ),
            statement(
                "ReadRollbackAlarms", ["cloudwatch:DescribeAlarms"], [facts.arn("cloudwatch", f"alarm:{own}")]
            ),
            statement(
                "ListPromotedModels", ["s3:ListBucket"], [bucket], {"StringLike": {"s3:prefix": ["models/*"]}}
            ),
            statement(
                "WritePromotedModels",
                ["s3:GetObject", "s3:PutObject"],
                [pulumi.Output.concat(bucket, "/models/*")],
            ),
            kms_use_statement("ArtifactKeyViaS3", kms_key_arn, s3_service),
            # SageMaker encrypts a new config's volumes with grants created on the caller's behalf.
            statement(
                "EndpointStorageKeyGrants",
                ["kms:CreateGrant", "kms:DescribeKey"],
                [kms_key_arn],
                {
                    "StringEquals": {
                        "kms:ViaService": pulumi.Output.concat("sagemaker.", facts.region, ".amazonaws.com")
                    },
                    "Bool": {"kms:GrantIsForAWSResource": "true"},
                },
            ),
        ]
        if endpoint_role_arns:
            statements.append(
                statement(
                    "PassEndpointRolesToSageMaker",
                    ["iam:PassRole"],
                    list(endpoint_role_arns),
                    {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                )
            )
        if settings.promotion_source_bucket:
            source = pulumi.Output.concat("arn:", facts.partition, ":s3:::", settings.promotion_source_bucket)
            statements += [
                statement(
                    "ListSourceModels",
                    ["s3:ListBucket"],
                    [source],
                    {"StringLike": {"s3:prefix": ["models/*"]}},
                ),
                statement(
                    "ReadSourceModels",
                    ["s3:GetObject"],  # the copy reads the current object, never an older version
                    [pulumi.Output.concat(source, "/models/*")],
                ),
            ]
            if settings.promotion_source_key_arn:
                statements.append(
                    kms_use_statement(
                        "SourceKeyViaS3", settings.promotion_source_key_arn, s3_service, encrypt=False
                    )
                )
        if tracking_server_arn is not None:
            statements.append(statement("ReadAndAliasRegistry", _REGISTRY_ACTIONS, [tracking_server_arn]))
            # MLflow clients read a version's artifacts straight from the tracking server's artifact store
            # (verification scores the version offline); read-only, this environment's prefix only.
            statements.append(statement("ReadRegistryArtifacts", ["s3:GetObject"],
                                        [pulumi.Output.concat(bucket, f"/{MLFLOW_ARTIFACT_PREFIX}/*")]))
        if settings.state_bucket:
            statements += state_statements(env, settings.state_bucket, settings.state_key_arn, facts.partition,
                                           s3_service)
        return statements


def state_statements(env: str, state_bucket: str, state_key_arn: str | None, partition: pulumi.Input[str],
                     s3_service: pulumi.Input[str]) -> list[dict[str, Any]]:
    """This environment's stack in the Pulumi S3 backend (``s3://<state_bucket>/shipway``), nothing more.

    The file backend keeps a stack in ``.pulumi/stacks/<project>/<stack>.json`` (+ ``.bak``), its
    update history and checkpoint backups under ``history/`` and ``backups/``, and a lock object per
    update under ``locks/<org>/<project>/<stack>/`` that it deletes when done; ``meta.yaml`` holds
    the backend's layout version. The stack's secrets provider (``awskms://``) encrypts and
    decrypts its data key with the state key directly, so that key use is not via S3.
    """
    root = pulumi.Output.concat("arn:", partition, ":s3:::", state_bucket)
    state = f"{STATE_PREFIX}/.pulumi"
    stack = f"{PULUMI_PROJECT}/{env}"
    objects = [pulumi.Output.concat(root, "/", key) for key in (
        f"{state}/stacks/{stack}.json", f"{state}/stacks/{stack}.json.bak", f"{state}/history/{stack}/*",
        f"{state}/backups/{stack}/*", f"{state}/locks/*/{stack}/*")]
    out = [
        statement("ListOwnStackState", ["s3:ListBucket"], [root],
                  {"StringLike": {"s3:prefix": [f"{state}/*"]}}),
        statement("ReadStateLayout", ["s3:GetObject"], [pulumi.Output.concat(root, f"/{state}/meta.yaml")]),
        statement("ReadWriteOwnStackState", ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"], objects),
    ]
    if state_key_arn:
        out += [
            kms_use_statement("StateKeyViaS3", state_key_arn, s3_service),
            statement("StackSecretsProvider", ["kms:Decrypt", "kms:Encrypt"], [state_key_arn]),
        ]
    return out
