"""The whole AWS platform of one environment, from a validated :class:`StackConfig`.

Order matters only through data: the platform key first (everything encrypts with it), then
the tracking server (its bucket holds packaged models), secrets, observability (its topic
receives every alarm), one endpoint per pinned model, and the CI deploy identity last because
it may pass exactly the endpoints' roles. The provider is built here, from ``shipway:region``,
so no resource ever falls back to AWS_REGION or a developer's profile default.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from components.aws.endpoint import InferenceEndpoint, endpoint_name
from components.aws.identity import DeployIdentity, DeployIdentityArgs
from components.aws.kms import PlatformKey, PlatformKeyArgs
from components.aws.observability import Observability
from components.aws.secrets import Secrets
from components.aws.tracking import TrackingServer
from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from components.contract import (
    EndpointExports,
    ObservabilityExports,
    PlatformExports,
    tracking_uri_of,
)
from components.registry.pin import ModelPin, ModelPinArgs
from components.registry.sagemaker import ARN_PREFIX as SAGEMAKER_ARN
from shipway_core.config import StackConfig

# Which stack secrets each consumer may read; anything else is stored but readable by no workload.
ENDPOINT_SECRETS = ("endpointApiKey",)
# Registry URIs the engine pins against (components/registry/pin.py).
PINNABLE = ("http://", "https://", SAGEMAKER_ARN)


def _check(cfg: StackConfig) -> None:
    if cfg.cloud != "aws":
        raise ValueError(f"cloud: {cfg.cloud!r} is not valid for components.aws.platform; allowed: aws")
    if not cfg.region:
        raise ValueError("region: None is not valid; the AWS target needs shipway:region")


def build_platform(
    cfg: StackConfig, secrets: Mapping[str, pulumi.Output[str]]
) -> PlatformExports:
    """Build key, tracking/registry, secrets, observability, one endpoint per pin, deploy identity."""
    _check(cfg)
    env, tags, settings = cfg.environment, cfg.tags, cfg.aws
    provider = aws.Provider("aws", region=cfg.region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    opts = pulumi.ResourceOptions(providers=[provider])

    key = PlatformKey(
        "key", PlatformKeyArgs(env, tags, cross_account_readers=settings.promotion_reader_arns), opts=opts
    )
    tracking = TrackingServer(
        "tracking",
        TrackingServerArgs(env, tags, protect=cfg.protect_registry),
        settings,
        kms_key_arn=key.key_arn,
        opts=opts,
    )
    vault = Secrets(
        "secrets", SecretsArgs(env, tags, values=dict(secrets)), settings, kms_key_arn=key.key_arn, opts=opts
    )
    observability = Observability(
        "observability",
        ObservabilityArgs(
            env,
            tags,
            endpoints={m: endpoint_name(env, m) for m in cfg.models},
            availability=cfg.slo.availability,
            latency_p99_ms=cfg.slo.latency_p99_ms,
            latency_objective=cfg.slo.latency_objective,
            max_error_rate=cfg.slo.max_error_rate,
            drift_psi=cfg.slo.drift_psi,
            drift_wasserstein=cfg.slo.drift_wasserstein, drift_jensen_shannon=cfg.slo.drift_jensen_shannon,
            drift_null_rate=cfg.slo.drift_null_rate,
            min_requests=cfg.slo.min_requests,
            log_retention_days=settings.log_retention_days,
        ),
        settings,
        kms_key_arn=key.key_arn,
        opts=opts,
    )
    api_key = next((vault.arn(k) for k in ENDPOINT_SECRETS if k in secrets), None)
    shared = cfg.registry_uri if cfg.registry_uri and cfg.registry_uri.startswith(PINNABLE) else None
    endpoints: dict[str, InferenceEndpoint] = {}
    for model, pin in sorted(cfg.models.items()):
        # With a shared registry (shipway:registryUri: a SageMaker MLflow ARN, or an MLflow URL), every
        # pin is checked before anything deploys (at preview too) and the environment alias follows
        # it; the endpoint waits for its pin. The environment's own new tracking server holds no
        # versions on a first deploy, so it is not pinned against.
        pins: list[pulumi.Resource] = []
        if shared is not None:
            pins.append(ModelPin(f"{model}-pin", ModelPinArgs(
                tracking_uri=shared, model_name=model, version=pin.version, environment=env,
                retain_on_delete=cfg.protect_registry)))
        endpoints[model] = InferenceEndpoint(
            model,
            InferenceEndpointArgs(
                environment=env,
                model_name=model,
                model_version=pin.version,
                # A shared registry (shipway:registryUri) when the stacks promote through one.
                tracking_uri=cfg.registry_uri or tracking.tracking_uri,
                tags=tags,
                instance_count=pin.instances,
                otlp_endpoint=settings.otlp_endpoint,
                latency_p99_ms=cfg.slo.latency_p99_ms,
                max_error_rate=cfg.slo.max_error_rate,
                drift_psi=cfg.slo.drift_psi, explain=pin.explain,
                drift_wasserstein=cfg.slo.drift_wasserstein, drift_jensen_shannon=cfg.slo.drift_jensen_shannon,
                drift_null_rate=cfg.slo.drift_null_rate,
            ),
            settings,
            kms_key_arn=key.key_arn,
            artifact_bucket=tracking.artifact_bucket_name,
            api_key_secret_arn=api_key,
            alarm_topic_arn=observability.alert_topic_arn,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=pins)),
        )
    deploy = None
    if settings.github_repository:
        deploy = DeployIdentity(
            "deploy",
            DeployIdentityArgs(env, tags),
            settings,
            artifact_bucket=tracking.artifact_bucket_name,
            kms_key_arn=key.key_arn,
            endpoint_role_arns=[e.role_arn for _, e in sorted(endpoints.items())],
            # The registry the pins live in: the shared one when the stacks promote through it.
            tracking_server_arn=(shared if shared is not None and shared.startswith(SAGEMAKER_ARN)
                                 else tracking.tracking_uri if settings.tracking_mode == "managed" else None),
            opts=opts,
        )

    status = {m: pulumi.Output.concat("sagemaker:", cfg.region or "", ":", e.endpoint_name)
              for m, e in endpoints.items()}
    return PlatformExports(
        cloud="aws",
        environment=env,
        tracking_uri=tracking_uri_of(tracking),
        registry_uri=cfg.registry_uri or tracking.tracking_uri,
        endpoints={m: EndpointExports.of(e, status[m], api_key_ref=api_key) for m, e in endpoints.items()},
        observability=ObservabilityExports(metrics_url=observability.prometheus_endpoint,
                                           alerts_url=observability.alert_topic_arn,
                                           dashboards_url=observability.grafana_url),
        target={
            "region": cfg.region,
            "artifactLocation": tracking.artifact_location,
            "artifactBucket": tracking.artifact_bucket_name,
            "kmsKeyArn": key.key_arn,
            "secretArns": vault.secret_arns,
            "endpointNames": {m: e.endpoint_name for m, e in endpoints.items()},
            "rollbackAlarms": {m: e.alarm_names for m, e in endpoints.items()},
            "dashboardJson": observability.dashboard_json,
            "otelConfigParameter": observability.otel_config_parameter,
            "deployRoleArn": deploy.role_arn if deploy else None,
            "oidcProviderArn": deploy.oidc_provider_arn if deploy else None,
        },
    )
