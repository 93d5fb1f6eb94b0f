"""Secrets Manager entries for one environment, sealed with the platform key.

Each named value becomes ``shipway/<env>/<kebab-name>``. Consumers never get a blanket
``secretsmanager:GetSecretValue``: :meth:`Secrets.read_statements` returns statements naming
exactly the secrets a consumer asks for, plus decrypt on the platform key only through
Secrets Manager. With ``aws.secretRotationLambdaArn`` set, every secret rotates on a schedule and
the value from stack config only seeds it (later config edits are ignored; rotation owns it).
The self-hosted tracking database password is not here: RDS generates, stores and rotates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws._base import aws_tags, kms_use_statement, statement
from components.common import SecretsArgs
from shipway_core.config import AwsSettings
from shipway_core.names import secret_slug, validate_secret_keys


def secret_key(name: str) -> str:
    """``endpointApiKey`` -> ``endpoint-api-key`` (one spelling in ARNs)."""
    validate_secret_keys([name])
    return secret_slug(name)


class Secrets(pulumi.ComponentResource):
    """One KMS-encrypted Secrets Manager secret per named value."""

    secret_arns: pulumi.Output[dict[str, str]]
    """Kebab-case name -> secret ARN (what consumers reference; never the value)."""

    def __init__(
        self,
        name: str,
        args: SecretsArgs,
        settings: AwsSettings,
        *,
        kms_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        validate_secret_keys(args.values)
        super().__init__("shipway:aws:Secrets", name, None, opts)
        keys = {secret_key(raw): raw for raw in args.values}
        if len(keys) != len(args.values):
            raise ValueError(
                f"values: {sorted(args.values)} name the same secret twice after normalising "
                "to kebab-case; rename one"
            )
        self._kms_key_arn = kms_key_arn
        tags = aws_tags(args.tags)
        rotation = settings.secret_rotation_lambda_arn
        self.secrets: dict[str, aws.secretsmanager.Secret] = {}
        for key, raw in sorted(keys.items()):
            secret = aws.secretsmanager.Secret(
                f"{name}-{key}",
                name=f"shipway/{args.environment}/{key}",
                kms_key_id=kms_key_arn,
                description=f"Shipway {args.environment} {key}",
                recovery_window_in_days=30 if args.environment == "prod" else 7,
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.secretsmanager.SecretVersion(
                f"{name}-{key}-value",
                secret_id=secret.id,
                secret_string=pulumi.Output.secret(args.values[raw]),
                opts=pulumi.ResourceOptions(
                    parent=self, ignore_changes=["secretString"] if rotation else None
                ),
            )
            if rotation:
                aws.secretsmanager.SecretRotation(
                    f"{name}-{key}-rotation",
                    secret_id=secret.id,
                    rotation_lambda_arn=rotation,
                    rotation_rules=aws.secretsmanager.SecretRotationRotationRulesArgs(
                        automatically_after_days=settings.secret_rotation_days
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            self.secrets[key] = secret
        self.secret_arns = (
            pulumi.Output.all(**{key: secret.arn for key, secret in self.secrets.items()})
            if self.secrets
            else pulumi.Output.from_input({})
        )
        self.register_outputs({"secret_arns": self.secret_arns})

    def arn(self, name: str) -> pulumi.Output[str]:
        """ARN of one secret, by its raw or kebab-case name."""
        key = secret_key(name)
        if key not in self.secrets:
            raise ValueError(
                f"name: {name!r} is not a secret of this environment; have {sorted(self.secrets)}"
            )
        return self.secrets[key].arn

    def read_statements(self, names: Iterable[str], region: pulumi.Input[str]) -> list[dict[str, Any]]:
        """Statements letting a consumer read exactly ``names`` (decrypting only via Secrets Manager)."""
        arns = [self.arn(n) for n in sorted(set(names))]
        if not arns:
            return []
        return [
            statement(
                "ReadOwnSecrets", ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"], arns
            ),
            kms_use_statement(
                "DecryptOwnSecrets",
                self._kms_key_arn,
                pulumi.Output.concat("secretsmanager.", region, ".amazonaws.com"),
                encrypt=False,
            ),
        ]
