"""The platform's customer-managed KMS key: every encrypted Shipway resource uses it.

One key per environment (not one per resource) keeps the key policy reviewable and lets a
security team revoke an environment's data access in one place. The key policy names the key
by its own ARN (a separate ``aws.kms.KeyPolicy``) instead of the usual ``"Resource": "*"``,
and grants the account explicit actions, never ``kms:*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws._base import account_facts, aws_tags, policy_json, prefix

# What the account (and through it, IAM policies) may do with the key. Explicit, so a future KMS
# action is not granted silently; key deletion is in the list because retiring an environment
# is an account decision, and it still waits out the deletion window.
KEY_ACCOUNT_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
_SERVICE_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)


@dataclass
class PlatformKeyArgs:
    """The environment whose data the key protects."""

    environment: str
    tags: Mapping[str, str]
    deletion_window_days: int = 30
    # Deploy roles of other accounts that read promoted models (decrypt via S3 only).
    cross_account_readers: tuple[str, ...] = ()


class PlatformKey(pulumi.ComponentResource):
    """A rotating symmetric CMK plus an alias and a key policy scoped to the key itself."""

    key_arn: pulumi.Output[str]
    """ARN of the key; resolves only after the key policy is in place."""
    alias_name: pulumi.Output[str]
    """``alias/shipway-<env>``: what humans type."""

    def __init__(self, name: str, args: PlatformKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("shipway:aws:PlatformKey", name, None, opts)
        if not 7 <= args.deletion_window_days <= 30:
            raise ValueError(
                f"deletion_window_days: {args.deletion_window_days} is not valid; use 7 to 30 (AWS limits)"
            )
        facts = account_facts(self)
        tags = aws_tags(args.tags)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Shipway {args.environment} platform key",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=args.deletion_window_days,
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        root = pulumi.Output.concat("arn:", facts.partition, ":iam::", facts.account_id, ":root")
        logs_arn = pulumi.Output.concat(
            "arn:", facts.partition, ":logs:", facts.region, ":", facts.account_id, ":log-group:*"
        )
        logs_service = pulumi.Output.concat("logs.", facts.region, ".amazonaws.com")
        readers: list[dict[str, object]] = []
        if args.cross_account_readers:
            readers.append(
                {
                    "Sid": "PromotionReadersDecryptModelsViaS3",
                    "Effect": "Allow",
                    "Principal": {"AWS": list(args.cross_account_readers)},
                    "Action": ["kms:Decrypt", "kms:DescribeKey"],
                    "Resource": self.key.arn,
                    "Condition": {
                        "StringEquals": {
                            "kms:ViaService": pulumi.Output.concat("s3.", facts.region, ".amazonaws.com")
                        }
                    },
                }
            )
        self.key_policy = aws.kms.KeyPolicy(
            f"{name}-key-policy",
            key_id=self.key.id,
            bypass_policy_lockout_safety_check=False,
            policy=policy_json(
                [
                    {
                        "Sid": "AccountAdministersKeyAndEnablesIamPolicies",
                        "Effect": "Allow",
                        "Principal": {"AWS": root},
                        "Action": list(KEY_ACCOUNT_ACTIONS),
                        "Resource": self.key.arn,
                    },
                    {
                        "Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups",
                        "Effect": "Allow",
                        "Principal": {"Service": logs_service},
                        "Action": list(_SERVICE_ACTIONS),
                        "Resource": self.key.arn,
                        "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": logs_arn}},
                    },
                    {
                        "Sid": "AlarmsAndPrometheusPublishToEncryptedTopic",
                        "Effect": "Allow",
                        "Principal": {"Service": ["cloudwatch.amazonaws.com", "aps.amazonaws.com"]},
                        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                        "Resource": self.key.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": facts.account_id}},
                    },
                    *readers,
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alias = aws.kms.Alias(
            f"{name}-alias",
            name=f"alias/{prefix(args.environment)}",
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Consumers wait for the policy: a log group created before it could not use the key.
        self.key_arn = pulumi.Output.all(self.key.arn, self.key_policy.id).apply(lambda v: v[0])
        self.alias_name = self.alias.name
        self.register_outputs({"key_arn": self.key_arn, "alias_name": self.alias_name})
