"""The whole Azure platform for one validated stack: what `shipway:cloud: azure` deploys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget
from components.azure.endpoint import InferenceEndpoint, SecretRefs, WorkspaceRef
from components.azure.identity import DeployIdentity, DeployIdentityArgs
from components.azure.observability import MonitoredResources, Observability
from components.azure.secrets import Secrets
from components.azure.tracking import TrackingServer
from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from shipway_core.config import StackConfig

# The only platform secrets an inference endpoint may read; others (e.g. a self-hosted
# tracking DB password) stay unreadable to serving identities.
ENDPOINT_SECRETS = ("endpointApiKey",)


def _check(cfg: StackConfig) -> None:
    """Fail before creating anything if the config cannot describe an Azure platform."""
    if cfg.cloud != "azure":
        raise ValueError(f"cloud: {cfg.cloud!r} is not valid; the Azure platform needs 'azure'")
    if not cfg.region:
        raise ValueError("region: None is not valid; the Azure target needs a location such as westeurope")
    stray = sorted(set(cfg.azure.previous_versions) - set(cfg.models))
    if stray:
        raise ValueError(
            f"azure.previousVersions: {stray!r} are not valid; allowed: models pinned in this stack "
            f"({', '.join(sorted(cfg.models)) or 'none'})"
        )


def _resource_group(cfg: StackConfig) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
    """Use the stack's existing resource group, or create ``shipway-<stack>`` when none is named."""
    if cfg.azure.resource_group_name:
        sub = azure_native.authorization.get_client_config_output().subscription_id
        name = cfg.azure.resource_group_name
        return name, pulumi.Output.concat("/subscriptions/", sub, "/resourceGroups/", name)
    group = azure_native.resources.ResourceGroup(
        "resource-group", resource_group_name=f"shipway-{cfg.stack}", location=cfg.region, tags=cfg.tags)
    return group.name, group.id


def build_platform(
    cfg: StackConfig, secrets: Mapping[str, pulumi.Output[str]]
) -> dict[str, pulumi.Output[Any]]:
    """Build tracking/registry, secrets, one endpoint per pinned model, observability and the
    CI deploy identity; return the stack outputs."""
    _check(cfg)
    tags = cfg.tags
    env = cfg.environment
    rg_name, rg_id = _resource_group(cfg)
    target = AzureTarget(resource_group_name=rg_name, location=cfg.region or "", settings=cfg.azure)

    tracking = TrackingServer("tracking", TrackingServerArgs(env, tags, protect=cfg.protect_registry), target)
    vault = Secrets("secrets", SecretsArgs(env, tags, values=dict(secrets)), target)
    workspace = WorkspaceRef(
        workspace_name=tracking.workspace_name, workspace_id=tracking.workspace_id,
        storage_account_id=tracking.storage_account_id, container_registry_id=tracking.container_registry_id)
    readable = [k for k in ENDPOINT_SECRETS if k in vault.secrets]
    refs = SecretRefs(
        ids={k: vault.secrets[k].id for k in readable},
        uris={k: vault.secrets[k].properties.apply(lambda p: p.secret_uri or "") for k in readable},
    )

    endpoints: dict[str, InferenceEndpoint] = {}
    for model, pin in sorted(cfg.models.items()):
        endpoints[model] = InferenceEndpoint(
            model,
            InferenceEndpointArgs(
                environment=env, model_name=model, model_version=pin.version,
                tracking_uri=tracking.tracking_uri, tags=tags, instance_count=pin.instances,
                latency_p99_ms=cfg.slo.latency_p99_ms, max_error_rate=cfg.slo.max_error_rate,
                drift_psi=cfg.slo.drift_psi),
            target, workspace, refs, previous_version=cfg.azure.previous_versions.get(model))

    diagnostics: dict[str, pulumi.Input[str]] = {
        "workspace": tracking.workspace_id,
        "workspace-vault": tracking.key_vault_id,
        "secrets-vault": vault.key_vault_id,
        "registry": tracking.container_registry_id,
        # Storage logs live on the blob service, not the account.
        "storage-blob": pulumi.Output.concat(tracking.storage_account_id, "/blobServices/default"),
        **{f"endpoint-{m}": e.endpoint_id for m, e in endpoints.items()},
    }
    observability = Observability(
        "observability",
        ObservabilityArgs(env, tags, endpoints={m: e.endpoint_url for m, e in endpoints.items()},
                          availability=cfg.slo.availability, latency_p99_ms=cfg.slo.latency_p99_ms,
                          drift_psi=cfg.slo.drift_psi, log_retention_days=cfg.azure.log_retention_days),
        target,
        MonitoredResources(
            log_analytics_workspace_id=tracking.log_analytics_workspace_id, diagnostics=diagnostics,
            endpoint_ids={m: e.endpoint_id for m, e in endpoints.items()},
            endpoint_names={m: e.endpoint_name for m, e in endpoints.items()},
            application_insights_connection_string=tracking.application_insights_connection_string),
        max_error_rate=cfg.slo.max_error_rate,
    )

    deploy = None
    if cfg.azure.github_repository:
        deploy = DeployIdentity("deploy", DeployIdentityArgs(
            env, tags, cfg.azure.github_repository, workspace_id=tracking.workspace_id,
            resource_group_id=rg_id), target)

    def per_model(read: Any) -> pulumi.Output[dict[str, Any]]:
        return pulumi.Output.all(**{m: read(e) for m, e in endpoints.items()}).apply(dict)

    return {
        "cloud": pulumi.Output.from_input("azure"),
        "environment": pulumi.Output.from_input(env),
        "region": pulumi.Output.from_input(cfg.region),
        "resourceGroupName": pulumi.Output.from_input(rg_name),
        "trackingUri": tracking.tracking_uri,
        "registryUri": tracking.registry_uri,
        "workspaceName": tracking.workspace_name,
        "keyVaultUri": vault.vault_uri,
        "endpoints": per_model(lambda e: e.endpoint_url),
        "endpointNames": per_model(lambda e: e.endpoint_name),
        "modelVersions": per_model(lambda e: e.model_version),
        "deployments": per_model(lambda e: e.deployments),
        "traffic": per_model(lambda e: e.traffic),
        "actionGroupId": observability.action_group_id,
        "alertNames": observability.alert_names,
        "prometheusWorkspaceId": observability.prometheus_workspace_id,
        "grafanaUrl": observability.grafana_url,
        "otelConfig": observability.otel_config,
        "deployClientId": deploy.client_id if deploy else pulumi.Output.from_input(None),
    }
