"""The whole Azure platform for one validated stack: what `shipway:cloud: azure` deploys."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget
from components.azure.endpoint import InferenceEndpoint, SecretRefs, WorkspaceRef
from components.azure.identity import DeployIdentity, DeployIdentityArgs
from components.azure.network import PrivateNetwork, PrivateNetworkArgs, PrivateTarget
from components.azure.observability import MonitoredResources, Observability
from components.azure.registry import ModelRegistry, ModelRegistryArgs, registry_resource_id
from components.azure.secrets import Secrets
from components.azure.tracking import TrackingServer
from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from components.contract import (
    EndpointExports,
    ObservabilityExports,
    PlatformExports,
    tracking_uri_of,
)
from shipway_core.config import StackConfig
from shipway_core.observability.collector import azure_monitor_collector_config

# The only platform secrets an inference endpoint may read; others (e.g. a self-hosted
# tracking DB password) stay unreadable to serving identities.
ENDPOINT_SECRETS = ("endpointApiKey",)


def _check(cfg: StackConfig) -> None:
    """Fail before creating anything if the config cannot describe an Azure platform."""
    if cfg.cloud != "azure":
        raise ValueError(f"cloud: {cfg.cloud!r} is not valid; the Azure platform needs 'azure'")
    if not cfg.region:
        raise ValueError("region: None is not valid; the Azure target needs a location such as westeurope")
    if not cfg.azure.subscription_id:
        raise ValueError("azure.subscriptionId: None is not valid; the Azure target needs the subscription id")
    stray = sorted(set(cfg.azure.previous_versions) - set(cfg.models))
    if stray:
        raise ValueError(
            f"azure.previousVersions: {stray!r} are not valid; allowed: models pinned in this stack "
            f"({', '.join(sorted(cfg.models)) or 'none'})"
        )


def _resource_group(cfg: StackConfig, opts: pulumi.ResourceOptions) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
    """Use the stack's existing resource group, or create ``shipway-<stack>`` when none is named."""
    if cfg.azure.resource_group_name:
        name = cfg.azure.resource_group_name
        return name, pulumi.Output.concat("/subscriptions/", cfg.azure.subscription_id or "", "/resourceGroups/", name)
    group = azure_native.resources.ResourceGroup(
        "resource-group", resource_group_name=f"shipway-{cfg.stack}", location=cfg.region, tags=cfg.tags, opts=opts)
    return group.name, group.id


def build_platform(
    cfg: StackConfig, secrets: Mapping[str, pulumi.Output[str]]
) -> PlatformExports:
    """Build tracking/registry, secrets, one endpoint per pinned model, observability and the
    CI deploy identity; return the stack outputs."""
    _check(cfg)
    tags = cfg.tags
    env = cfg.environment
    # An explicit provider: the subscription and location come from the stack, never from a
    # developer's `az` login default.
    provider = azure_native.Provider("azure", subscription_id=cfg.azure.subscription_id, location=cfg.region)
    opts = pulumi.ResourceOptions(providers=[provider])
    rg_name, rg_id = _resource_group(cfg, opts)
    target = AzureTarget(resource_group_name=rg_name, location=cfg.region or "", settings=cfg.azure)

    # The model registry dev, test and prod share: owned by the one stack with createRegistry,
    # named by the others; deployments read azureml://registries/<name>/models/<m>/versions/<N>.
    registry_name = cfg.azure.registry_name or ""
    registry_group = cfg.azure.registry_resource_group or rg_name
    model_registry = None
    if cfg.azure.create_registry:
        model_registry = ModelRegistry("models", ModelRegistryArgs(env, tags, registry_name), target, opts=opts)
        model_registry_id: pulumi.Input[str] = model_registry.registry_id
    else:
        model_registry_id = registry_resource_id(cfg.azure.subscription_id or "", registry_group, registry_name)

    tracking = TrackingServer("tracking", TrackingServerArgs(env, tags, protect=cfg.protect_registry), target,
                              opts=opts)
    vault = Secrets("secrets", SecretsArgs(env, tags, values=dict(secrets)), target, opts=opts)
    network = None
    if target.private:
        # Public access is off (always on test/prod), so everything is reached through private
        # endpoints in the stack's VNet, resolved by private DNS zones linked to it.
        network = PrivateNetwork("network", PrivateNetworkArgs(
            env, tags, address_space=cfg.azure.vnet_address_space,
            endpoint_subnet=cfg.azure.private_endpoint_subnet,
            targets={
                "workspace": PrivateTarget(tracking.workspace_id, "amlworkspace"),
                "model-registry": PrivateTarget(model_registry_id, "amlregistry"),
                "storage-blob": PrivateTarget(tracking.storage_account_id, "blob"),
                "workspace-vault": PrivateTarget(tracking.key_vault_id, "vault"),
                "secrets-vault": PrivateTarget(vault.key_vault_id, "vault"),
                "container-registry": PrivateTarget(tracking.container_registry_id, "registry"),
            }), target, opts=opts)
    # The workspace's managed network allows only approved outbound traffic: deployments pull the
    # pinned model from the shared registry through this private-endpoint rule.
    ml = azure_native.machinelearningservices
    ml.ManagedNetworkSettingsRule(
        "tracking-registry-outbound", resource_group_name=rg_name, workspace_name=tracking.workspace_name,
        rule_name="shared-model-registry",
        properties=ml.PrivateEndpointOutboundRuleArgs(
            type="PrivateEndpoint", category="UserDefined",
            destination=ml.PrivateEndpointDestinationArgs(
                service_resource_id=model_registry_id, subresource_target="amlregistry", spark_enabled=False)),
        opts=pulumi.ResourceOptions(parent=tracking))
    workspace = WorkspaceRef(
        workspace_name=tracking.workspace_name, workspace_id=tracking.workspace_id,
        storage_account_id=tracking.storage_account_id, container_registry_id=tracking.container_registry_id,
        model_registry_id=model_registry_id)
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
                drift_psi=cfg.slo.drift_psi, explain=pin.explain),
            target, workspace, refs, previous_version=cfg.azure.previous_versions.get(model), opts=opts)

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
                          latency_objective=cfg.slo.latency_objective,
                          drift_psi=cfg.slo.drift_psi, drift_wasserstein=cfg.slo.drift_wasserstein,
                          drift_jensen_shannon=cfg.slo.drift_jensen_shannon, drift_null_rate=cfg.slo.drift_null_rate,
                          max_error_rate=cfg.slo.max_error_rate,
                          min_requests=cfg.slo.min_requests,
                          log_retention_days=cfg.azure.log_retention_days),
        target,
        MonitoredResources(
            log_analytics_workspace_id=tracking.log_analytics_workspace_id, diagnostics=diagnostics,
            endpoint_ids={m: e.endpoint_id for m, e in endpoints.items()},
            endpoint_names={m: e.endpoint_name for m, e in endpoints.items()},
            application_insights_connection_string=tracking.application_insights_connection_string),
        opts=opts,
    )

    deploy = None
    if cfg.azure.github_repository:
        # The deploy role is derived from what this stack created that a promotion touches.
        promoted: list[pulumi.Resource] = [tracking.workspace, *observability.alerts]
        for e in endpoints.values():
            promoted += [e.endpoint, e.identity, e.traffic_shift, *e.versions.values(), *e.autoscale.values()]
        deploy = DeployIdentity("deploy", DeployIdentityArgs(
            env, tags, cfg.azure.github_repository, workspace_id=tracking.workspace_id,
            resource_group_id=rg_id, resource_types=sorted({r.pulumi_resource_type for r in promoted}),
            auth_mode=cfg.azure.endpoint_auth_mode, model_registry_id=model_registry_id,
            model_registry_group_id=pulumi.Output.concat(
                "/subscriptions/", cfg.azure.subscription_id or "", "/resourceGroups/", registry_group)),
            target, opts=opts)

    status = {m: pulumi.Output.concat("azureml:", rg_name, "/", tracking.workspace_name, "/", e.endpoint_name)
              for m, e in endpoints.items()}
    api_key_ref = refs.ids.get("endpointApiKey")
    return PlatformExports(
        cloud="azure",
        environment=env,
        tracking_uri=tracking_uri_of(tracking),
        registry_uri=tracking.registry_uri,
        endpoints={m: EndpointExports.of(e, status[m], api_key_ref=api_key_ref) for m, e in endpoints.items()},
        observability=ObservabilityExports(alerts_url=observability.action_group_id,
                                           metrics_url=observability.prometheus_workspace_id,
                                           dashboards_url=observability.grafana_url),
        target={
            "region": cfg.region,
            "resourceGroupName": rg_name,
            "workspaceName": tracking.workspace_name,
            "keyVaultUri": vault.vault_uri,
            "endpointNames": {m: e.endpoint_name for m, e in endpoints.items()},
            "deployments": {m: e.deployments for m, e in endpoints.items()},
            "traffic": {m: e.traffic for m, e in endpoints.items()},
            "alertNames": observability.alert_names,
            "otelConfig": observability.otel_config,
            # An OpenTelemetry Collector config with the Azure Monitor exporter, generated like every
            # target's (shipway_core.observability.collector); it reads the connection string from
            # its environment (otelConfig's APPLICATIONINSIGHTS_CONNECTION_STRING), never from the file.
            "collectorConfig": json.dumps(azure_monitor_collector_config(env), indent=2, sort_keys=True),
            "deployClientId": deploy.client_id if deploy else None,
            "subscriptionId": cfg.azure.subscription_id,
            "modelRegistry": registry_name,
            "modelRegistryId": model_registry_id,
            "trafficSteps": list(cfg.azure.traffic_steps),
            "bakeMinutes": cfg.azure.bake_minutes,
            "vnetId": network.vnet_id if network else None,
        },
    )
