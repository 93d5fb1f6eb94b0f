"""Azure ML workspace as the MLflow tracking server and model registry."""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, access, client_config, grant, secure_vault, unique_name
from components.common import TrackingServerArgs, validate_tags

_SENSITIVE = ("confidential", "restricted")
_CMK_NAME = "artifacts-cmk"
_WORKSPACE_CMK_NAME = "workspace-cmk"


class TrackingServer(pulumi.ComponentResource):
    """An Azure Machine Learning workspace (MLflow-compatible tracking + registry) and its dependencies.

    Children: a user-assigned identity for the workspace, a storage account (no public blob
    access, TLS 1.2, infrastructure encryption, shared keys off, soft delete + versioning), a
    Key Vault in RBAC mode, Log Analytics + workspace-based Application Insights, a container
    registry with the admin user off, and resource-scoped data-plane roles for the identity.
    """

    tracking_uri: pulumi.Output[str]
    """MLflow tracking URI of the workspace (``azureml://...``)."""
    registry_uri: pulumi.Output[str]
    """MLflow registry URI; the workspace registry is the tracking server's."""
    workspace_name: pulumi.Output[str]
    """Name of the Azure ML workspace."""
    workspace_id: pulumi.Output[str]
    """ARM id of the Azure ML workspace."""
    storage_account_id: pulumi.Output[str]
    """ARM id of the artifact storage account."""
    key_vault_id: pulumi.Output[str]
    """ARM id of the workspace Key Vault."""
    container_registry_id: pulumi.Output[str]
    """ARM id of the container registry serving images are pulled from."""
    log_analytics_workspace_id: pulumi.Output[str]
    """ARM id of the Log Analytics workspace every diagnostic setting writes to."""
    application_insights_id: pulumi.Output[str]
    """ARM id of the workspace-based Application Insights component."""
    application_insights_connection_string: pulumi.Output[str]
    """Connection string OpenTelemetry exporters use to reach Application Insights."""
    identity_id: pulumi.Output[str]
    """ARM id of the workspace's user-assigned identity."""

    def __init__(self, name: str, args: TrackingServerArgs, target: AzureTarget,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        super().__init__("shipway:azure:TrackingServer", name, None, opts)
        tags = dict(args.tags)
        private = target.private
        prod = args.environment == "prod"
        config = client_config(self)
        sub = config.subscription_id
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)

        self.identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=target.resource_group_name,
            location=target.location, tags=tags, opts=child)

        self.vault = secure_vault(
            f"{name}-vault", target=target, tenant_id=config.tenant_id,
            vault_name=unique_name("kv", sub, name, max_len=24, hyphens=True),
            tags=tags, parent=self, protect=args.protect)

        # Customer-managed key for the artifact store: disabling it revokes every artifact at once.
        self.key = azure_native.keyvault.Key(
            f"{name}-cmk",
            resource_group_name=target.resource_group_name,
            vault_name=self.vault.name,
            key_name=_CMK_NAME,
            properties=azure_native.keyvault.KeyPropertiesArgs(
                kty="RSA", key_size=3072, key_ops=["wrapKey", "unwrapKey"],
                rotation_policy=azure_native.keyvault.RotationPolicyArgs(
                    attributes=azure_native.keyvault.KeyRotationPolicyAttributesArgs(expiry_time="P2Y"),
                    lifetime_actions=[
                        azure_native.keyvault.LifetimeActionArgs(
                            trigger=azure_native.keyvault.TriggerArgs(time_after_create="P90D"),
                            action=azure_native.keyvault.ActionArgs(
                                type=azure_native.keyvault.KeyRotationPolicyActionType.ROTATE)),
                        azure_native.keyvault.LifetimeActionArgs(
                            trigger=azure_native.keyvault.TriggerArgs(time_before_expiry="P30D"),
                            action=azure_native.keyvault.ActionArgs(
                                type=azure_native.keyvault.KeyRotationPolicyActionType.NOTIFY)),
                    ],
                ),
            ),
            tags=tags,
            opts=keep,
        )
        # The workspace pins a key *version* and changing it replaces the workspace, so its key
        # is separate and not auto-rotated: rotation is a planned workspace update (see docs).
        self.workspace_key = azure_native.keyvault.Key(
            f"{name}-workspace-cmk",
            resource_group_name=target.resource_group_name,
            vault_name=self.vault.name,
            key_name=_WORKSPACE_CMK_NAME,
            properties=azure_native.keyvault.KeyPropertiesArgs(
                kty="RSA", key_size=3072, key_ops=["wrapKey", "unwrapKey"],
                rotation_policy=azure_native.keyvault.RotationPolicyArgs(
                    attributes=azure_native.keyvault.KeyRotationPolicyAttributesArgs(expiry_time="P2Y"),
                    lifetime_actions=[azure_native.keyvault.LifetimeActionArgs(
                        trigger=azure_native.keyvault.TriggerArgs(time_before_expiry="P60D"),
                        action=azure_native.keyvault.ActionArgs(
                            type=azure_native.keyvault.KeyRotationPolicyActionType.NOTIFY))],
                ),
            ),
            tags=tags,
            opts=keep,
        )
        self.key_grant = grant(
            f"{name}-cmk-crypto-user", principal_id=self.identity.principal_id,
            role="Key Vault Crypto Service Encryption User", scope=self.key.id, subscription_id=sub,
            parent=self)
        self.workspace_key_grant = grant(
            f"{name}-workspace-cmk-crypto-user", principal_id=self.identity.principal_id,
            role="Key Vault Crypto Service Encryption User", scope=self.workspace_key.id, subscription_id=sub,
            parent=self)

        self.storage = azure_native.storage.StorageAccount(
            f"{name}-storage",
            account_name=unique_name("st", sub, name, max_len=24),
            resource_group_name=target.resource_group_name,
            location=target.location,
            kind="StorageV2",
            sku={"name": "Standard_ZRS" if prod else "Standard_LRS"},
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            allow_cross_tenant_replication=False,
            default_to_o_auth_authentication=True,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            public_network_access=access(private),
            network_rule_set=azure_native.storage.NetworkRuleSetArgs(
                default_action=azure_native.storage.DefaultAction.DENY if private
                else azure_native.storage.DefaultAction.ALLOW,
                bypass="AzureServices"),
            identity=azure_native.storage.IdentityArgs(
                type="UserAssigned", user_assigned_identities=[self.identity.id]),
            encryption=azure_native.storage.EncryptionArgs(
                key_source="Microsoft.Keyvault",
                key_vault_properties=azure_native.storage.KeyVaultPropertiesArgs(
                    # Versionless: the account follows the key's automatic rotation.
                    key_vault_uri=self.vault.properties.apply(lambda p: p.vault_uri or ""),
                    key_name=_CMK_NAME,
                ),
                encryption_identity=azure_native.storage.EncryptionIdentityArgs(
                    encryption_user_assigned_identity=self.identity.id),
                require_infrastructure_encryption=True,
                services=azure_native.storage.EncryptionServicesArgs(
                    blob=azure_native.storage.EncryptionServiceArgs(enabled=True, key_type="Account"),
                    file=azure_native.storage.EncryptionServiceArgs(enabled=True, key_type="Account"),
                ),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect,
                                        depends_on=[self.key_grant]),
        )
        retention_days = 30 if prod else 7
        self.blob_service = azure_native.storage.BlobServiceProperties(
            f"{name}-blob-service",
            account_name=self.storage.name,
            resource_group_name=target.resource_group_name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": retention_days},
            container_delete_retention_policy={"enabled": True, "days": retention_days},
            opts=child,
        )

        self.logs = azure_native.operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=target.resource_group_name,
            location=target.location,
            sku={"name": "PerGB2018"},
            retention_in_days=target.settings.log_retention_days,
            public_network_access_for_ingestion=access(private),
            public_network_access_for_query=access(private),
            features={"disable_local_auth": True},
            tags=tags,
            opts=child,
        )
        self.insights = azure_native.applicationinsights.Component(
            f"{name}-insights",
            resource_group_name=target.resource_group_name,
            location=target.location,
            kind="web",
            application_type="web",
            ingestion_mode="LogAnalytics",
            workspace_resource_id=self.logs.id,
            disable_local_auth=True,
            public_network_access_for_ingestion=access(private),
            public_network_access_for_query=access(private),
            tags=tags,
            opts=child,
        )

        self.registry = azure_native.containerregistry.Registry(
            f"{name}-registry",
            registry_name=unique_name("cr", sub, name, max_len=50),
            resource_group_name=target.resource_group_name,
            location=target.location,
            # Only Premium registries can turn public network access off.
            sku={"name": "Premium" if private else "Standard"},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            public_network_access=access(private),
            network_rule_bypass_options="AzureServices",
            tags=tags,
            opts=child,
        )

        principal = self.identity.principal_id
        self.grants = [
            grant(f"{name}-{suffix}", principal_id=principal, role=role, scope=scope,
                  subscription_id=sub, parent=self)
            for suffix, role, scope in (
                ("storage-blob-contributor", "Storage Blob Data Contributor", self.storage.id),
                ("vault-secrets-officer", "Key Vault Secrets Officer", self.vault.id),
                ("registry-push", "AcrPush", self.registry.id),
            )
        ]

        self.workspace = azure_native.machinelearningservices.Workspace(
            f"{name}-workspace",
            resource_group_name=target.resource_group_name,
            location=target.location,
            kind="Default",
            sku=azure_native.machinelearningservices.SkuArgs(
                name="Basic", tier=azure_native.machinelearningservices.SkuTier.BASIC),
            friendly_name=f"Shipway {args.environment}",
            identity=azure_native.machinelearningservices.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[self.identity.id]),
            primary_user_assigned_identity=self.identity.id,
            storage_account=self.storage.id,
            key_vault=self.vault.id,
            application_insights=self.insights.id,
            container_registry=self.registry.id,
            # Shared keys are off on the storage account, so datastores authenticate as the identity.
            system_datastores_auth_mode="Identity",
            public_network_access=access(private),
            managed_network={
                "isolation_mode": "AllowOnlyApprovedOutbound" if private else "AllowInternetOutbound"},
            hbi_workspace=args.tags.get("data-classification") in _SENSITIVE,
            encryption=azure_native.machinelearningservices.EncryptionPropertyArgs(
                status="Enabled",
                key_vault_properties=azure_native.machinelearningservices.KeyVaultPropertiesArgs(
                    key_vault_arm_id=self.vault.id,
                    key_identifier=self.workspace_key.key_uri_with_version,
                ),
                identity=azure_native.machinelearningservices.IdentityForCmkArgs(
                    user_assigned_identity=self.identity.id),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect,
                depends_on=[*self.grants, self.workspace_key_grant],
                # A new key version must never replace the workspace; rotation is an explicit update.
                ignore_changes=["encryption.keyVaultProperties.keyIdentifier"]),
        )

        self.tracking_uri = self.workspace.ml_flow_tracking_uri.apply(lambda uri: uri or "")
        self.registry_uri = self.tracking_uri
        self.workspace_name = self.workspace.name
        self.workspace_id = self.workspace.id
        self.storage_account_id = self.storage.id
        self.key_vault_id = self.vault.id
        self.container_registry_id = self.registry.id
        self.log_analytics_workspace_id = self.logs.id
        self.application_insights_id = self.insights.id
        self.application_insights_connection_string = pulumi.Output.secret(self.insights.connection_string)
        self.identity_id = self.identity.id
        self.register_outputs({
            "tracking_uri": self.tracking_uri,
            "registry_uri": self.registry_uri,
            "workspace_name": self.workspace_name,
            "workspace_id": self.workspace_id,
            "storage_account_id": self.storage_account_id,
            "key_vault_id": self.key_vault_id,
            "container_registry_id": self.container_registry_id,
            "log_analytics_workspace_id": self.log_analytics_workspace_id,
            "application_insights_id": self.application_insights_id,
            "application_insights_connection_string": self.application_insights_connection_string,
            "identity_id": self.identity_id,
        })
