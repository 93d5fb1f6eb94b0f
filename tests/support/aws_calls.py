"""Every AWS API call a deploy-role workflow makes, derived from the workflow and the code it runs.

``deploy-env.yml`` (pin changes run under the deploy role ``AWS_ROLE_ARN``) runs, in order:
``pulumi up`` (state backend + the resources a pin change replaces), ``shipway env verify``,
``shipway env status``, and on failure ``shipway env revert-pins`` + ``pulumi up`` + ``env verify``.
``promote.yml``/an operator with the same role runs ``shipway model promote --apply`` (the
adapter's ``prepare`` copy) and ``shipway model rollback --when-alarming`` (CloudWatch alarms).

``BOTO3_METHODS`` maps each boto3 method the AWS adapter and ``shipway/aws_ops.py`` call to the IAM
actions AWS authorizes it with; the test fails when the code calls a method missing here, so a new
call cannot reach CI without a permission decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENV = "prod"
REGION = "eu-west-1"
ACCOUNT = "000000000000"
ARTIFACTS = "shipway-prod-artifacts-mock"
SOURCE = "shipway-test-artifacts-x"
STATE = "shipway-state-prod"
ENDPOINT = "shipway-prod-churn"
SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
S3_VIA = f"s3.{REGION}.amazonaws.com"
SM_VIA = f"sagemaker.{REGION}.amazonaws.com"

# boto3 method -> IAM actions (HeadObject is authorized as GetObject; a managed copy is GetObject on
# the source + PutObject on the target; HeadObject of a missing key needs ListBucket to answer 404).
BOTO3_METHODS: dict[str, tuple[str, ...]] = {
    "describe_endpoint": ("sagemaker:DescribeEndpoint",),
    "describe_endpoint_config": ("sagemaker:DescribeEndpointConfig",),
    "describe_model": ("sagemaker:DescribeModel",),
    "invoke_endpoint": ("sagemaker:InvokeEndpoint",),
    "describe_alarms": ("cloudwatch:DescribeAlarms",),
    "head_object": ("s3:GetObject", "s3:ListBucket"),
    "copy": ("s3:GetObject", "s3:PutObject"),
    "put_object": ("s3:PutObject",),
    "get_object": ("s3:GetObject",),
    "list_objects_v2": ("s3:ListBucket",),
}


@dataclass(frozen=True)
class Call:
    """One authorized request: who makes it (``by``), the action, the resource and its condition keys."""

    by: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def _state(key: str) -> str:
    return f"arn:aws:s3:::{STATE}/shipway/.pulumi/{key}"


DEPLOY_ROLE_CALLS: tuple[Call, ...] = (
    # pulumi up: the S3 state backend (PULUMI_BACKEND_URL=s3://<state>/shipway, docs/gitops.md)
    Call("pulumi up (state)", "s3:ListBucket", f"arn:aws:s3:::{STATE}", {"s3:prefix": "shipway/.pulumi/stacks/"}),
    Call("pulumi up (state)", "s3:GetObject", _state("meta.yaml")),
    Call("pulumi up (state)", "s3:GetObject", _state(f"stacks/shipway/{ENV}.json")),
    Call("pulumi up (state)", "s3:PutObject", _state(f"stacks/shipway/{ENV}.json")),
    Call("pulumi up (state)", "s3:PutObject", _state(f"stacks/shipway/{ENV}.json.bak")),
    Call("pulumi up (state)", "s3:PutObject", _state(f"history/shipway/{ENV}/{ENV}-1733300000.history.json")),
    Call("pulumi up (state)", "s3:PutObject", _state(f"backups/shipway/{ENV}/{ENV}.1733300000.json")),
    Call("pulumi up (state)", "s3:PutObject", _state(f"locks/organization/shipway/{ENV}/5f1c.json")),
    Call("pulumi up (state)", "s3:DeleteObject", _state(f"locks/organization/shipway/{ENV}/5f1c.json")),
    Call("pulumi up (state)", "kms:GenerateDataKey", "arn:aws:kms:eu-west-1:000000000000:key/state",
         {"kms:ViaService": S3_VIA}),
    Call("pulumi up (state)", "kms:Decrypt", "arn:aws:kms:eu-west-1:000000000000:key/state",
         {"kms:ViaService": S3_VIA}),
    Call("pulumi up (secrets provider awskms://)", "kms:Encrypt", "arn:aws:kms:eu-west-1:000000000000:key/state"),
    Call("pulumi up (secrets provider awskms://)", "kms:Decrypt", "arn:aws:kms:eu-west-1:000000000000:key/state"),
    # pulumi up: what a pin change replaces (components/aws/endpoint.py: versioned model + config)
    Call("pulumi up (pin)", "sagemaker:CreateModel", f"{SM}:model/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:AddTags", f"{SM}:model/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:DescribeModel", f"{SM}:model/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:ListTags", f"{SM}:model/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/churn-role",
         {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    Call("pulumi up (pin)", "sagemaker:CreateEndpointConfig", f"{SM}:endpoint-config/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:DescribeEndpointConfig", f"{SM}:endpoint-config/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "kms:CreateGrant", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": SM_VIA, "kms:GrantIsForAWSResource": "true"}),
    Call("pulumi up (pin)", "kms:DescribeKey", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": SM_VIA, "kms:GrantIsForAWSResource": "true"}),
    Call("pulumi up (pin)", "sagemaker:UpdateEndpoint", f"{SM}:endpoint/{ENDPOINT}"),
    Call("pulumi up (pin)", "sagemaker:AddTags", f"{SM}:endpoint/{ENDPOINT}"),
    Call("pulumi up (pin)", "sagemaker:ListTags", f"{SM}:endpoint/{ENDPOINT}"),
    Call("pulumi up (pin)", "sagemaker:AddTags", f"{SM}:endpoint-config/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:ListTags", f"{SM}:endpoint-config/{ENDPOINT}-v5"),
    Call("pulumi up (pin)", "sagemaker:DeleteEndpointConfig", f"{SM}:endpoint-config/{ENDPOINT}-v4"),
    Call("pulumi up (pin)", "sagemaker:DeleteModel", f"{SM}:model/{ENDPOINT}-v4"),
    Call("shipway env verify: the env alias follows the verified pin", "sagemaker-mlflow:SetRegisteredModelAlias",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    # shipway env verify / env status (AwsAdapter.status, .verify; registry through sagemaker-mlflow)
    Call("shipway env verify", "sagemaker:DescribeEndpoint", f"{SM}:endpoint/{ENDPOINT}"),
    Call("shipway env verify", "sagemaker:DescribeEndpointConfig", f"{SM}:endpoint-config/{ENDPOINT}-v5"),
    Call("shipway env verify", "sagemaker:DescribeModel", f"{SM}:model/{ENDPOINT}-v5"),
    Call("shipway env verify", "sagemaker:InvokeEndpoint", f"{SM}:endpoint/{ENDPOINT}"),
    Call("shipway env verify (registry)", "sagemaker-mlflow:AccessUI",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway env verify (registry)", "sagemaker-mlflow:GetModelVersion",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway env verify (registry)", "sagemaker-mlflow:GetRegisteredModel",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway env verify (registry)", "sagemaker-mlflow:GetDownloadURIForModelVersionArtifacts",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway env verify (model + golden.csv artifacts)", "s3:GetObject",
         f"arn:aws:s3:::{ARTIFACTS}/mlflow/3/abc/artifacts/model/MLmodel"),
    Call("shipway env verify", "kms:Decrypt", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    Call("shipway env status (alias)", "sagemaker-mlflow:GetModelVersionByAlias",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway model promote (latest version)", "sagemaker-mlflow:SearchModelVersions",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    Call("shipway model promote (gate evidence)", "sagemaker-mlflow:SetModelVersionTag",
         f"{SM}:mlflow-tracking-server/shipway-prod-mlflow"),
    # shipway model promote --apply: AwsAdapter.prepare copies the package from the source env
    Call("prepare (HeadObject target)", "s3:GetObject", f"arn:aws:s3:::{ARTIFACTS}/models/churn/5/model.tar.gz"),
    Call("prepare (HeadObject target, 404)", "s3:ListBucket", f"arn:aws:s3:::{ARTIFACTS}",
         {"s3:prefix": "models/churn/5/model.tar.gz"}),
    Call("prepare (copy: read source)", "s3:GetObject", f"arn:aws:s3:::{SOURCE}/models/churn/5/model.tar.gz"),
    Call("prepare (HeadObject source, 404)", "s3:ListBucket", f"arn:aws:s3:::{SOURCE}",
         {"s3:prefix": "models/churn/5/model.tar.gz"}),
    Call("prepare (copy: write target)", "s3:PutObject", f"arn:aws:s3:::{ARTIFACTS}/models/churn/5/model.tar.gz"),
    Call("prepare (source key)", "kms:Decrypt", "arn:aws:kms:eu-west-1:000000000000:key/source",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (source key)", "kms:DescribeKey", "arn:aws:kms:eu-west-1:000000000000:key/source",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (target key)", "kms:GenerateDataKey", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (target key)", "kms:Encrypt", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (target key)", "kms:DescribeKey", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (multipart copy re-encrypts)", "kms:ReEncryptFrom", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    Call("prepare (multipart copy re-encrypts)", "kms:ReEncryptTo", "arn:aws:kms:eu-west-1:000000000000:key/mock",
         {"kms:ViaService": S3_VIA}),
    # shipway model rollback --when-alarming: AwsAdapter.rollback_decision
    Call("rollback --when-alarming", "cloudwatch:DescribeAlarms",
         f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{ENDPOINT}-error-rate"),
)

# Called only by `shipway env capture` (drift-watch.yml), which runs under the read-only preview
# role the account bootstrap creates (docs/gitops.md), not under the deploy role.
READ_ONLY_ROLE_METHODS = frozenset({"get_object", "list_objects_v2"})
