"""The whole `local` platform for one validated stack config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pulumi

from components.common import InferenceEndpointArgs, ObservabilityArgs, SecretsArgs, TrackingServerArgs
from components.contract import (
    EndpointExports,
    ObservabilityExports,
    PlatformExports,
    tracking_uri_of,
)
from components.local.components import (
    LOOPBACK,
    InferenceEndpoint,
    LocalPlacement,
    Observability,
    Secrets,
    TelemetryHub,
    Tracing,
    TrackingServer,
)
from components.registry.pin import ModelPin, ModelPinArgs
from shipway_core.config import StackConfig, endpoint_ports
from shipway_core.local import data_root
from shipway_core.observability.collector import LogSource
from shipway_core.observability.delivery import AUDIT_RELATIVE_PATH
from shipway_core.observability.links import LOG_QUERY_PATH


def _rules_yaml(cfg: StackConfig, pipeline_jobs: tuple[str, ...] = ()) -> str:
    """Recording + SLO/drift/quality alert rules for every endpoint, from the stack's SLOs."""
    from shipway_core.observability.rules import RuleOptions, generate_rules, render_yaml

    if not cfg.models:
        return "groups: []\n"
    # Every model alert links to its log lines and traces on this stack's stores.
    # (no logs link when the stack runs no log store: `make setup` has not built it)
    options = RuleOptions(log_store_url=f"http://{LOOPBACK}:{cfg.local.log_store_port}"
                          if "victorialogs" in pipeline_jobs else None,
                          traces_url=f"http://{LOOPBACK}:{cfg.local.jaeger_query_port}",
                          pipeline_jobs=pipeline_jobs)
    return render_yaml(generate_rules(cfg.slo, sorted(cfg.models), cfg.environment, options))


def _project_root(default: Path) -> Path:
    """Where Pulumi.yaml is: the checkout whose `shipway` commands append to the audit trail
    (the program's own package may be imported from elsewhere); ``default`` under mocks, which
    report a placeholder rather than a path."""
    found = pulumi.runtime.get_root_directory()
    return Path(found) if found and Path(found).is_absolute() else default


def build_platform(cfg: StackConfig, secrets: Mapping[str, pulumi.Output[str]], root: Path) -> PlatformExports:
    """Tracking server, registry pins, one endpoint per model, secrets and Prometheus."""
    data = data_root(cfg, root)
    tags = cfg.tags
    # Every supervisor announces its restart-count metric here; Prometheus scrapes them.
    targets = str(data / "prometheus" / "targets")

    tracking = TrackingServer("tracking", TrackingServerArgs(environment=cfg.environment, tags=tags,
                                                             protect=cfg.protect_registry),
                              LocalPlacement(str(data / "mlflow"), cfg.local.tracking_port, targets),
                              backend_store_uri=cfg.local.backend_store_uri)
    registry_uri = cfg.registry_uri or tracking.url

    vault = Secrets("secrets", SecretsArgs(environment=cfg.environment, tags=tags,
                                           values={"endpointApiKey": secrets["endpointApiKey"]}),
                    directory=str(data / "secrets"))

    jaeger = str(root / ".shipway" / "tools" / "bin" / "jaeger")
    tracing = Tracing("tracing", cfg.environment, tags,
                      LocalPlacement(str(data / "jaeger"), cfg.local.jaeger_query_port, targets),
                      otlp_port=cfg.local.jaeger_otlp_port, binary=jaeger,
                      metrics_port=cfg.local.jaeger_metrics_port)
    # The collector is the hub: spans from the serving apps go through it to Jaeger, and it
    # tails every platform process log into VictoriaLogs. Without its binaries (setup not run
    # since issue 24) the apps fall back to exporting straight to Jaeger, with a warning.
    tools = root / ".shipway" / "tools" / "bin"
    binaries = {"victoria-logs": str(tools / "victoria-logs"), "otelcol-shipway": str(tools / "otelcol-shipway")}
    otlp_endpoint: pulumi.Output[str] = tracing.otlp_endpoint
    telemetry_targets: dict[str, str] = {}
    log_store_url: pulumi.Output[str] | None = None
    if all(Path(b).exists() for b in binaries.values()):
        hub = TelemetryHub("telemetry", cfg.environment, tags,
                           log_store=LocalPlacement(str(data / "victorialogs"), cfg.local.log_store_port, targets),
                           collector=LocalPlacement(str(data / "otelcol"), cfg.local.otlp_http_port, targets),
                           otlp_grpc_port=cfg.local.otlp_grpc_port, metrics_port=cfg.local.collector_metrics_port,
                           retention=cfg.local.log_retention, traces_endpoint=tracing.otlp_endpoint,
                           log_sources=[LogSource("shipway-serving", str(data / "endpoints" / "*" / "serving.log")),
                                        LogSource("mlflow", str(data / "mlflow" / "mlflow-server.log"))],
                           binaries=binaries)
        otlp_endpoint, telemetry_targets = hub.otlp_endpoint, hub.scrape_targets
        log_store_url = hub.log_store_url
    else:
        pulumi.log.warn(f"no collector or log store binary in {tools}: spans go straight to Jaeger and no log is "
                        "collected; run `make setup` to build them")

    endpoints: dict[str, InferenceEndpoint] = {}
    # Pinned per model (models.<name>.port): a model's address never depends on the others.
    ports = endpoint_ports(cfg.models, cfg.local)
    for model, pin in sorted(cfg.models.items()):
        alias = ModelPin(f"{model}-pin", ModelPinArgs(tracking_uri=registry_uri, model_name=model,
                                                       version=pin.version, environment=cfg.environment,
                                                       retain_on_delete=cfg.protect_registry),
                         pulumi.ResourceOptions(depends_on=[tracking]))
        endpoints[model] = InferenceEndpoint(
            model,
            InferenceEndpointArgs(environment=cfg.environment, model_name=model, model_version=pin.version,
                                  tracking_uri=registry_uri, tags=tags, instance_count=pin.instances,
                                  otlp_endpoint=otlp_endpoint,
                                  latency_p99_ms=cfg.slo.latency_p99_ms, max_error_rate=cfg.slo.max_error_rate,
                                  drift_psi=cfg.slo.drift_psi, explain=pin.explain),
            LocalPlacement(str(data / "endpoints" / model), ports[model], targets),
            api_key_file=vault.files["endpointApiKey"],
            opts=pulumi.ResourceOptions(depends_on=[alias, vault]),
        )

    # Pipeline health: the /metrics of Alertmanager, the MLflow server (registry) and Jaeger (their
    # `up` pages ShipwayPipelineComponentDown; their errors ShipwayRegistryErrors and
    # ShipwayTraceIngestionErrors). Job names are shipway_core.observability.pipeline.PIPELINE_JOBS.
    telemetry_targets = {**telemetry_targets, **tracing.scrape_targets,
                         "alertmanager": f"{LOOPBACK}:{cfg.local.alertmanager_port}",
                         "mlflow": f"{LOOPBACK}:{cfg.local.tracking_port}"}
    # Scrape targets are plain strings (known ports), so a pin change never touches Prometheus.
    observability = Observability(
        "observability",
        ObservabilityArgs(environment=cfg.environment, tags=tags,
                          endpoints={m: f"http://{LOOPBACK}:{port}" for m, port in ports.items()},
                          availability=cfg.slo.availability, latency_p99_ms=cfg.slo.latency_p99_ms,
                          latency_objective=cfg.slo.latency_objective, max_error_rate=cfg.slo.max_error_rate,
                          drift_psi=cfg.slo.drift_psi, drift_wasserstein=cfg.slo.drift_wasserstein,
                          drift_jensen_shannon=cfg.slo.drift_jensen_shannon, drift_null_rate=cfg.slo.drift_null_rate,
                          min_requests=cfg.slo.min_requests),
        LocalPlacement(str(data / "prometheus"), cfg.local.prometheus_port, targets),
        rules_yaml=_rules_yaml(cfg, ("prometheus", *sorted(telemetry_targets))),
        alertmanager=LocalPlacement(str(data / "alertmanager"), cfg.local.alertmanager_port, targets),
        alert_sink=LocalPlacement(str(data / "alerts"), cfg.local.alert_sink_port, targets),
        # The audit trail's delivery figures (job shipway-delivery) on the port after the alert sink's.
        delivery=LocalPlacement(str(data / "delivery"), cfg.local.alert_sink_port + 1, targets),
        audit_log=str(_project_root(root) / AUDIT_RELATIVE_PATH),
        telemetry=telemetry_targets,
        opts=pulumi.ResourceOptions(depends_on=list(endpoints.values())),
    )
    return PlatformExports(
        cloud="local",
        environment=cfg.environment,
        tracking_uri=tracking_uri_of(tracking),
        registry_uri=registry_uri,
        endpoints={m: EndpointExports.of(e, status=e.url, api_key_ref=e.api_key_file, request_log=e.request_log)
                   for m, e in endpoints.items()},
        observability=ObservabilityExports(metrics_url=observability.prometheus_url,
                                           alerts_url=observability.alertmanager_url,
                                           traces_url=tracing.query_url, log_store_url=log_store_url,
                                           log_query_url=log_store_url.apply(lambda u: u + LOG_QUERY_PATH)
                                           if log_store_url is not None else None),
        target={"host": LOOPBACK},
    )
