"""Platform secrets in their own Key Vault, read by consumers through managed identity."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, client_config, grant, secure_vault, unique_name
from components.common import SecretsArgs, validate_tags
from shipway_core.names import validate_secret_keys


class Secrets(pulumi.ComponentResource):
    """One Key Vault (RBAC mode, purge protection, private) holding the environment's secrets.

    Kept apart from the workspace vault so the workspace identity, which may write its own
    connection secrets, can never read platform secrets. ``readers`` (consumer name ->
    principal id) get *Key Vault Secrets User* on each secret, not on the vault; consumers
    built later (the inference endpoint) grant themselves the same role from ``secret_ids``.
    """

    vault_uri: pulumi.Output[str]
    """Data-plane URI of the vault (``https://<name>.vault.azure.net/``)."""
    key_vault_id: pulumi.Output[str]
    """ARM id of the vault."""
    secret_ids: pulumi.Output[dict[str, str]]
    """Secret name -> ARM id, the scope consumers are granted on."""
    secret_uris: pulumi.Output[dict[str, str]]
    """Secret name -> versionless secret URI consumers read (never the value)."""

    def __init__(self, name: str, args: SecretsArgs, target: AzureTarget,
                 readers: Mapping[str, pulumi.Input[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        # One naming rule on every target; Key Vault accepts the camelCase key as the secret name.
        validate_secret_keys(args.values)
        super().__init__("shipway:azure:Secrets", name, None, opts)
        tags = dict(args.tags)
        config = client_config(self)
        sub = config.subscription_id

        self.vault = secure_vault(
            f"{name}-vault", target=target, tenant_id=config.tenant_id,
            vault_name=unique_name("kv", sub, name, max_len=24, hyphens=True),
            tags=tags, parent=self, protect=args.environment == "prod")

        self.secrets: dict[str, azure_native.keyvault.Secret] = {}
        for key, value in sorted(args.values.items()):
            self.secrets[key] = azure_native.keyvault.Secret(
                f"{name}-{key}",
                secret_name=key,
                vault_name=self.vault.name,
                resource_group_name=target.resource_group_name,
                properties={
                    "value": pulumi.Output.secret(value),
                    "content_type": "text/plain",
                    "attributes": {"enabled": True},
                },
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.grants = [
            grant(f"{name}-{key}-{reader}", principal_id=principal, role="Key Vault Secrets User",
                  scope=secret.id, subscription_id=sub, parent=self)
            for reader, principal in sorted((readers or {}).items())
            for key, secret in self.secrets.items()
        ]

        self.key_vault_id = self.vault.id
        self.vault_uri = self.vault.properties.apply(lambda p: p.vault_uri or "")
        self.secret_ids = pulumi.Output.all(
            **{k: s.id for k, s in self.secrets.items()}).apply(dict)
        self.secret_uris = pulumi.Output.all(
            **{k: s.properties.apply(lambda p: p.secret_uri or "") for k, s in self.secrets.items()}
        ).apply(dict)
        self.register_outputs({
            "vault_uri": self.vault_uri,
            "key_vault_id": self.key_vault_id,
            "secret_ids": self.secret_ids,
            "secret_uris": self.secret_uris,
        })
