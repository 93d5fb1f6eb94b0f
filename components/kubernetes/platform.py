"""build_platform: one validated StackConfig -> the whole Shipway platform in a cluster.

Order matters only through data: every component takes the namespace *output*, so the engine
creates the Namespace (with its Pod Security labels and default-deny policy) before anything
runs in it, and workloads take Secret names through the Secret objects' ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from components.contract import (
    EndpointExports,
    ObservabilityExports,
    PlatformExports,
    tracking_uri_of,
)
from components.kubernetes.endpoint import InferenceEndpoint
from components.kubernetes.namespace import EnvironmentNamespace, EnvironmentNamespaceArgs
from components.kubernetes.observability import Observability
from components.kubernetes.podspec import MAX_ENDPOINT_NAME, namespace_name, validate_object_name
from components.kubernetes.secrets import Secrets
from components.kubernetes.tracking import TrackingServer
from components.registry.pin import ModelPin, ModelPinArgs
from shipway_core.config import StackConfig

# Secrets every Kubernetes stack needs (config keys, set with `pulumi config set --secret`).
REQUIRED_SECRETS = ("endpointApiKey", "trackingDbPassword")


def endpoint_name(model: str) -> str:
    """Component (and Deployment/Service) name of a model's endpoint."""
    return f"serve-{model}"


def validate_platform_inputs(cfg: StackConfig, secrets: Mapping[str, Any]) -> None:
    """Fail before creating anything: wrong target, or secrets Pulumi would need but lacks."""
    if cfg.cloud != "kubernetes":
        raise ValueError(f"cloud: {cfg.cloud!r} is not valid for this builder; allowed: kubernetes")
    for model in cfg.models:
        validate_object_name(endpoint_name(model), MAX_ENDPOINT_NAME)
    if cfg.kubernetes.external_secrets:
        return  # values come from the ClusterSecretStore, not from Pulumi
    missing = [k for k in REQUIRED_SECRETS if secrets.get(k) is None]
    if missing:
        raise ValueError(
            f"secrets: missing {', '.join(missing)}; set each with "
            "`pulumi config set --secret shipway:<key>` or turn on kubernetes.externalSecrets"
        )


def build_platform(cfg: StackConfig, secrets: Mapping[str, pulumi.Output[str]]) -> PlatformExports:
    """Namespace, secrets, tracking server, observability and one endpoint per pinned model."""
    validate_platform_inputs(cfg, secrets)
    settings, tags, env = cfg.kubernetes, cfg.tags, cfg.environment

    namespace = EnvironmentNamespace("shipway", EnvironmentNamespaceArgs(env, tags), settings)
    ns = namespace.namespace_name
    # None values (externalSecrets on) become ExternalSecrets; validate_platform_inputs checked the rest.
    values: dict[str, Any] = {key: secrets.get(key) for key in REQUIRED_SECRETS}
    values.update({k: v for k, v in secrets.items() if k not in values})
    env_secrets = Secrets("secrets", SecretsArgs(env, tags, values=values), settings, namespace=ns)

    def secret_name(key: str) -> pulumi.Output[str]:
        return env_secrets.secret_names.apply(lambda names: names[key])

    tracking = TrackingServer(
        "mlflow",
        TrackingServerArgs(env, tags, protect=cfg.protect_registry),
        settings,
        db_password_secret=secret_name("trackingDbPassword"),
        namespace=ns,
    )
    registry: pulumi.Input[str] = cfg.registry_uri or tracking.tracking_uri

    plain_ns = namespace_name(env, settings)
    observability = Observability(
        "observability",
        ObservabilityArgs(
            env,
            tags,
            endpoints={m: f"http://{endpoint_name(m)}.{plain_ns}.svc.cluster.local" for m in cfg.models},
            availability=cfg.slo.availability,
            latency_p99_ms=cfg.slo.latency_p99_ms,
            latency_objective=cfg.slo.latency_objective,
            max_error_rate=cfg.slo.max_error_rate,
            drift_psi=cfg.slo.drift_psi,
            drift_wasserstein=cfg.slo.drift_wasserstein, drift_jensen_shannon=cfg.slo.drift_jensen_shannon,
            drift_null_rate=cfg.slo.drift_null_rate,
            min_requests=cfg.slo.min_requests,
        ),
        settings,
        namespace=ns,
    )

    endpoints: dict[str, InferenceEndpoint] = {}
    for model, pin in sorted(cfg.models.items()):
        # With a registry the engine can reach (shipway:registryUri over http(s)), every pin is
        # checked before anything rolls (at preview too) and the environment alias follows it. The
        # in-cluster tracking server is only reachable from inside the cluster: no engine pre-flight.
        pins: list[pulumi.Resource] = []
        if cfg.registry_uri and cfg.registry_uri.startswith(("http://", "https://")):
            pins.append(ModelPin(f"{model}-pin", ModelPinArgs(
                tracking_uri=cfg.registry_uri, model_name=pin.name, version=pin.version,
                environment=env, retain_on_delete=cfg.protect_registry)))
        endpoints[model] = InferenceEndpoint(
            endpoint_name(model),
            InferenceEndpointArgs(
                environment=env,
                model_name=pin.name,
                model_version=pin.version,
                tracking_uri=registry,
                tags=tags,
                instance_count=pin.instances,
                otlp_endpoint=observability.otlp_endpoint,
                latency_p99_ms=cfg.slo.latency_p99_ms,
                max_error_rate=cfg.slo.max_error_rate,
                drift_psi=cfg.slo.drift_psi, explain=pin.explain,
            ),
            settings,
            api_key_secret=secret_name("endpointApiKey"),
            namespace=ns,
            external_tracking=cfg.registry_uri is not None,
            opts=pulumi.ResourceOptions(depends_on=pins),
        )

    return PlatformExports(
        cloud="kubernetes",
        environment=env,
        tracking_uri=tracking_uri_of(tracking),
        registry_uri=registry,
        endpoints={
            m: EndpointExports.of(e, pulumi.Output.concat("kubernetes:", ns, "/", endpoint_name(m)),
                                  api_key_ref=secret_name("endpointApiKey"))
            for m, e in endpoints.items()
        },
        observability=ObservabilityExports(traces_url=observability.otlp_endpoint),
        target={
            "namespace": ns,
            "alertRules": observability.alert_rule_names,
            "secretNames": env_secrets.secret_names,
        },
    )
