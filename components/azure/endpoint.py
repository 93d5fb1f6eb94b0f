"""Managed online endpoint serving one pinned model version, with blue/green deployments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget, access, client_config, grant, unique_name
from components.azure.registry import registry_model_uri
from components.common import (
    InferenceEndpointArgs,
    reject_unsupported,
    validate_instance_count,
    validate_model_pin,
    validate_tags,
)
from shipway_core import contract

AUTH_MODES = ("AADToken", "Key")
# The one secret the serving app reads on Azure ML (by Key Vault URI, see shipway_core.contract).
API_KEY_SECRET = "endpointApiKey"  # noqa: S105 - a secret's key, not its value
_DEPLOYMENT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
# ARM API version of the template that sets the traffic map (GA, supports AADToken auth).
_ENDPOINT_API_VERSION = "2024-10-01"


def _probe() -> azure_native.machinelearningservices.ProbeSettingsArgs:
    """A replica that stops answering for 30 s is restarted; one not ready gets no traffic."""
    return azure_native.machinelearningservices.ProbeSettingsArgs(
        initial_delay="PT30S", period="PT10S", timeout="PT2S", failure_threshold=3, success_threshold=1)


@dataclass
class WorkspaceRef:
    """The tracking server resources an endpoint serves from (outputs of ``TrackingServer``)."""

    workspace_name: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    storage_account_id: pulumi.Input[str]
    container_registry_id: pulumi.Input[str]
    # ARM id of the shared Azure ML registry the deployments read models from.
    model_registry_id: pulumi.Input[str] = ""


@dataclass
class SecretRefs:
    """Secrets the endpoint reads at runtime: name -> ARM id (grant scope) and URI (env var)."""

    ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    uris: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


def deployment_name(version: int) -> str:
    """Deployment names derive from the registry version, so a pin change is a new deployment."""
    return f"v{version}"


def validate_previous_version(model_version: int, previous_version: int | None) -> None:
    """The version kept at 0% during a transition must be a real, different version."""
    if previous_version is None:
        return
    if isinstance(previous_version, bool) or not isinstance(previous_version, int) or previous_version < 1:
        raise ValueError(
            f"previous_version: {previous_version!r} is not valid; use the previously pinned "
            "registry version (a positive integer) or None"
        )


def validate_secret_refs(secrets: SecretRefs) -> None:
    """Only secrets the serving app reads: anything else would be granted and never used."""
    unknown = sorted(set(secrets.uris) - {API_KEY_SECRET})
    if unknown:
        raise ValueError(f"secrets: {unknown!r} are not read by the serving app on Azure ML; "
                         f"pass only {API_KEY_SECRET!r} (the endpoint API key)")


def validate_auth_mode(auth_mode: str) -> None:
    """Only authenticated endpoints: AADToken (preferred) or Key."""
    if auth_mode not in AUTH_MODES:
        raise ValueError(f"auth_mode: {auth_mode!r} is not valid; allowed: {', '.join(AUTH_MODES)}")


def traffic_map(model_version: int, previous_version: int | None = None,
                gradual: bool = False) -> dict[str, int]:
    """Where ``pulumi up`` leaves traffic.

    Without a previous version, all traffic is on the pin. With one kept deployed, an all-at-once
    stack (``trafficSteps: [100]``) moves everything to the pin and keeps the previous one at 0%;
    a gradual stack leaves all traffic on the previous version and the new one at 0%, and
    ``shipway model promote --apply`` moves it step by step (shipway/targets/azure.py), rolling
    back on the error-rate, p99 or drift alert.
    """
    if previous_version is None:
        return {deployment_name(model_version): 100}
    if gradual:
        return {deployment_name(model_version): 0, deployment_name(previous_version): 100}
    return {deployment_name(model_version): 100, deployment_name(previous_version): 0}


def _traffic_template(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """An ARM template that re-applies the endpoint with its traffic map (Incremental mode)."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [{
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "apiVersion": _ENDPOINT_API_VERSION,
            "name": f"{endpoint['workspace']}/{endpoint['name']}",
            "location": endpoint["location"],
            "kind": "Managed",
            "tags": endpoint["tags"],
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {endpoint["identity"]: {}}},
            "properties": {
                "description": endpoint["description"],
                "authMode": endpoint["auth_mode"],
                "publicNetworkAccess": endpoint["public_network_access"],
                "traffic": endpoint["traffic"],
            },
        }],
    }


class InferenceEndpoint(pulumi.ComponentResource):
    """A managed online endpoint with one deployment per pinned version and a traffic map.

    Azure rejects a traffic map naming a deployment that does not exist yet, and a deployment
    needs its endpoint first. So the endpoint is created without traffic, the deployments
    after it, and a ``-traffic`` ARM template deployment (depending on every deployment)
    re-applies the endpoint with the map. Changing the pin adds deployment ``v<new>``, moves
    100% to it, and keeps ``v<previous_version>`` at 0% until ``previous_version`` is removed
    from the stack after verification, which deletes the old deployment on the next ``up``.

    ``args.api_key`` is not passed to Azure: with ``Key`` auth Azure issues the endpoint keys,
    and the platform's API key reaches the serving app as a Key Vault secret URI (``secrets``).
    """

    endpoint_url: pulumi.Output[str]
    """Scoring URI of the endpoint."""
    endpoint_name: pulumi.Output[str]
    """Physical (region-unique) endpoint name."""
    endpoint_id: pulumi.Output[str]
    """ARM id of the endpoint (alert and diagnostic scope)."""
    deployments: pulumi.Output[list[str]]
    """Names of the live deployments, pinned first."""
    traffic: pulumi.Output[dict[str, int]]
    """Deployment name -> traffic percentage."""
    model_version: pulumi.Output[int]
    """The pinned registry version receiving all traffic."""
    identity_principal_id: pulumi.Output[str]
    """Principal id of the endpoint's user-assigned identity."""

    def __init__(self, name: str, args: InferenceEndpointArgs, target: AzureTarget, workspace: WorkspaceRef,
                 secrets: SecretRefs | None = None, previous_version: int | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        validate_model_pin(args.model_name, args.model_version)
        validate_tags(args.tags)
        validate_instance_count(args.environment, args.instance_count)
        reject_unsupported("azure", "api_key", "<secret>" if args.api_key is not None else None,
                           "Azure ML issues endpoint keys itself and the serving app reads the platform key "
                           "from Key Vault: pass secrets (SecretRefs) instead")
        validate_previous_version(args.model_version, previous_version)
        if previous_version == args.model_version:
            # A rollback re-pinned the version kept warm: it simply serves again, nothing is kept at 0%.
            previous_version = None
        validate_secret_refs(secrets or SecretRefs())
        auth_mode = target.settings.endpoint_auth_mode
        validate_auth_mode(auth_mode)
        if not target.settings.registry_name:
            raise ValueError("azure.registryName: None is not valid; name the Azure ML registry shared by dev, "
                             "test and prod (deployments read azureml://registries/<name>/models/...)")
        if not workspace.model_registry_id:
            raise ValueError("workspace.model_registry_id: '' is not valid; pass the shared registry's ARM id "
                             "(the endpoint identity is granted AzureML Registry User on it)")
        self._registry_name = target.settings.registry_name
        super().__init__("shipway:azure:InferenceEndpoint", name, None, opts)
        secrets = secrets or SecretRefs()
        self._target = target
        self._args = args
        self._workspace = workspace
        self._secrets = secrets
        # The endpoint outlives versions: its tags carry no version, so a pin change never
        # updates (re-PUTs) the endpoint itself; deployments carry their own model-version tag.
        tags = {**args.tags, "model-name": args.model_name}
        sub = client_config(self).subscription_id
        public = access(target.private)

        self.identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=target.resource_group_name,
            location=target.location, tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.grants = self._grants(name, sub)

        physical = unique_name("", sub, f"{args.model_name}-{args.environment}", max_len=32, hyphens=True)
        description = f"{args.model_name} ({args.environment})"
        self.endpoint = azure_native.machinelearningservices.OnlineEndpoint(
            f"{name}-endpoint",
            endpoint_name=physical,
            workspace_name=workspace.workspace_name,
            resource_group_name=target.resource_group_name,
            location=target.location,
            kind="Managed",
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            properties={"auth_mode": auth_mode, "public_network_access": public, "description": description},
            tags=tags,
            # The traffic map belongs to the -traffic template below; never reset it from here.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["properties.traffic"]),
        )

        versions = [args.model_version] + ([previous_version] if previous_version is not None else [])
        self.versions = {
            v: self._deployment(name, v, sub, {**tags, "model-version": str(v)}) for v in versions
        }
        self.autoscale = {
            v: self._autoscale(name, v, deployment, {**tags, "model-version": str(v)})
            for v, deployment in self.versions.items()
        }

        traffic = traffic_map(args.model_version, previous_version,
                              gradual=target.settings.traffic_steps[0] < 100)
        template = pulumi.Output.all(
            workspace=workspace.workspace_name, name=self.endpoint.name, location=target.location,
            identity=self.identity.id, tags=tags, auth_mode=auth_mode, public_network_access=public,
            description=description, traffic=traffic,
        ).apply(_traffic_template)
        self.traffic_shift = azure_native.resources.Deployment(
            f"{name}-traffic",
            resource_group_name=target.resource_group_name,
            properties=azure_native.resources.DeploymentPropertiesArgs(
                mode=azure_native.resources.DeploymentMode.INCREMENTAL, template=template),
            tags={**tags, "model-version": str(args.model_version)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.versions.values())),
        )

        self.endpoint_url = self.endpoint.properties.apply(lambda p: p.scoring_uri or "")
        self.endpoint_name = self.endpoint.name
        self.endpoint_id = self.endpoint.id
        self.deployments = pulumi.Output.from_input([deployment_name(v) for v in versions])
        self.traffic = pulumi.Output.from_input(traffic)
        self.model_version = pulumi.Output.from_input(args.model_version)
        self.identity_principal_id = self.identity.principal_id
        self.register_outputs({
            "endpoint_url": self.endpoint_url,
            "endpoint_name": self.endpoint_name,
            "endpoint_id": self.endpoint_id,
            "deployments": self.deployments,
            "traffic": self.traffic,
            "model_version": self.model_version,
            "identity_principal_id": self.identity_principal_id,
        })

    def _grants(self, name: str, sub: pulumi.Output[str]) -> list[azure_native.authorization.RoleAssignment]:
        """What serving needs and nothing more, each on the one resource it reads."""
        principal = self.identity.principal_id
        ws = self._workspace
        grants = [
            # Reads the pinned model from the shared Azure ML registry (and nothing else there).
            grant(f"{name}-model-registry-user", principal_id=principal, role="AzureML Registry User",
                  scope=ws.model_registry_id, subscription_id=sub, parent=self),
            grant(f"{name}-registry-pull", principal_id=principal, role="AcrPull",
                  scope=ws.container_registry_id, subscription_id=sub, parent=self),
            grant(f"{name}-storage-blob-reader", principal_id=principal, role="Storage Blob Data Reader",
                  scope=ws.storage_account_id, subscription_id=sub, parent=self),
            grant(f"{name}-metrics-writer", principal_id=principal, role="AzureML Metrics Writer (preview)",
                  scope=ws.workspace_id, subscription_id=sub, parent=self),
        ]
        grants += [
            grant(f"{name}-secret-{key}", principal_id=principal, role="Key Vault Secrets User",
                  scope=secret_id, subscription_id=sub, parent=self)
            for key, secret_id in sorted(self._secrets.ids.items())
        ]
        return grants

    def _environment(self, version: int) -> dict[str, pulumi.Input[str]]:
        """Runtime config as plain env vars (shipway_core.contract, Azure ML): URIs of secrets, never values."""
        args = self._args
        env: dict[str, pulumi.Input[str]] = {
            contract.PLATFORM: contract.AZUREML,
            contract.TRACKING_URI: args.tracking_uri,
            contract.MODEL_NAME: args.model_name,
            contract.MODEL_VERSION: str(version),
            contract.MODEL_URI: f"models:/{args.model_name}/{version}",
            contract.ENVIRONMENT: args.environment,
        }
        if args.otlp_endpoint is not None:
            env[contract.OTLP_ENDPOINT] = args.otlp_endpoint
        if args.explain:
            env[contract.EXPLAIN] = "true"
        if API_KEY_SECRET in self._secrets.uris:
            # Read at start from Key Vault with this identity (Key Vault Secrets User on that secret).
            env[contract.API_KEY_SECRET_URI] = self._secrets.uris[API_KEY_SECRET]
            env[contract.IDENTITY_CLIENT_ID] = self.identity.client_id
        return env

    def _deployment(self, name: str, version: int, sub: pulumi.Output[str],
                    tags: Mapping[str, str]) -> azure_native.machinelearningservices.OnlineDeployment:
        """One managed deployment serving exactly ``version`` of the model from the shared registry.

        The asset id is ``azureml://registries/<registry>/models/<m>/versions/<N>``: the same string
        in dev, test and prod, so the bytes prod serves are the bytes dev verified.
        """
        args, target = self._args, self._target
        model_id = registry_model_uri(self._registry_name, args.model_name, version)
        properties = azure_native.machinelearningservices.ManagedOnlineDeploymentArgs(
            endpoint_compute_type="Managed",
            model=model_id,
            instance_type=target.settings.instance_type,
            environment_id=target.settings.serving_environment,
            scale_settings=azure_native.machinelearningservices.DefaultScaleSettingsArgs(scale_type="Default"),
            liveness_probe=_probe(),
            readiness_probe=_probe(),
            request_settings=azure_native.machinelearningservices.OnlineRequestSettingsArgs(
                request_timeout="PT5S", max_queue_wait="PT0.5S"),
            app_insights_enabled=True,
            # Inputs and outputs land in the workspace datastore: the drift job and incident review
            # read what prod actually served.
            data_collector=azure_native.machinelearningservices.DataCollectorArgs(collections={
                kind: azure_native.machinelearningservices.CollectionArgs(data_collection_mode="Enabled")
                for kind in ("model_inputs", "model_outputs")
            }),
            egress_public_network_access=access(target.private),
            environment_variables=self._environment(version),
        )
        return azure_native.machinelearningservices.OnlineDeployment(
            f"{name}-{deployment_name(version)}",
            deployment_name=deployment_name(version),
            endpoint_name=self.endpoint.name,
            workspace_name=self._workspace.workspace_name,
            resource_group_name=target.resource_group_name,
            location=target.location,
            sku={"name": "Default", "capacity": args.instance_count},
            properties=properties,
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
        )

    def _autoscale(self, name: str, version: int, deployment: pulumi.Resource,
                   tags: Mapping[str, str]) -> azure_native.monitor.AutoscaleSetting:
        """CPU-based autoscale between the pinned instance count and twice that.

        Managed online deployments scale through Azure Monitor autoscale (TargetUtilization is a
        Kubernetes-only scale type); the floor stays at ``instance_count`` so prod never drops
        below two replicas, and a version kept at 0% stays warm for an instant rollback.
        """
        count = self._args.instance_count
        dep_id = deployment.id  # type: ignore[attr-defined]

        monitor = azure_native.monitor

        def rule(operator: monitor.ComparisonOperationType, threshold: float, window: str,
                 direction: monitor.ScaleDirection, cooldown: str) -> monitor.ScaleRuleArgs:
            return monitor.ScaleRuleArgs(
                metric_trigger=monitor.MetricTriggerArgs(
                    metric_name="CpuUtilizationPercentage", metric_namespace=_DEPLOYMENT_NAMESPACE,
                    metric_resource_uri=dep_id, operator=operator, threshold=threshold,
                    statistic=monitor.MetricStatisticType.AVERAGE,
                    time_aggregation=monitor.TimeAggregationType.AVERAGE,
                    time_grain="PT1M", time_window=window),
                scale_action=monitor.ScaleActionArgs(
                    direction=direction, type=monitor.ScaleType.CHANGE_COUNT, value="1", cooldown=cooldown))

        return azure_native.monitor.AutoscaleSetting(
            f"{name}-{deployment_name(version)}-autoscale",
            resource_group_name=self._target.resource_group_name,
            location=self._target.location,
            enabled=True,
            target_resource_uri=dep_id,
            profiles=[azure_native.monitor.AutoscaleProfileArgs(
                name="cpu",
                capacity=azure_native.monitor.ScaleCapacityArgs(
                    minimum=str(count), default=str(count), maximum=str(max(2 * count, count + 1))),
                rules=[
                    rule(monitor.ComparisonOperationType.GREATER_THAN, 70, "PT5M",
                         monitor.ScaleDirection.INCREASE, "PT5M"),
                    rule(monitor.ComparisonOperationType.LESS_THAN, 25, "PT10M",
                         monitor.ScaleDirection.DECREASE, "PT10M"),
                ],
            )],
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
