"""Component resources of the `local` target (type tokens ``shipway:local:<Noun>``)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.common import (
    InferenceEndpointArgs,
    ObservabilityArgs,
    SecretsArgs,
    TrackingServerArgs,
    reject_unsupported,
    validate_instance_count,
    validate_model_pin,
    validate_tags,
)
from components.local.providers import (
    AlertmanagerProvider,
    AlertSinkProvider,
    CollectorProvider,
    DeliveryMetricsProvider,
    EndpointProvider,
    JaegerProvider,
    LogStoreProvider,
    PrometheusProvider,
    SecretFileProvider,
    TrackingServerProvider,
)
from shipway_core.names import secret_slug, validate_secret_keys
from shipway_core.observability.collector import CollectorSpec, LogSource, collector_config
from shipway_core.observability.collector import render_yaml as render_collector_yaml
from shipway_core.observability.delivery import DELIVERY_JOB

LOOPBACK = "127.0.0.1"


@dataclass
class LocalPlacement:
    """Where a local component puts its files and which port it listens on."""

    data_dir: str
    port: int
    # Where the process's supervisor announces its restart-count metrics to Prometheus
    # (a file_sd directory); None: the restart count is only in the status file.
    targets_dir: str | None = None

    def validate(self, field: str) -> None:
        if not Path(self.data_dir).is_absolute():
            raise ValueError(f"{field}.data_dir: {self.data_dir!r} is not valid; use an absolute path")
        if not 1024 <= self.port <= 65535:
            raise ValueError(f"{field}.port: {self.port!r} is not valid; use a port number 1024-65535")


class _Process(Resource):
    """A dynamic resource whose outputs include the supervised process id."""

    pid: pulumi.Output[int]
    alive: pulumi.Output[bool]

    def __init__(self, provider: Any, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions,
                 placement: LocalPlacement | None = None):
        extra = {"metricsTargetsDir": placement.targets_dir} if placement and placement.targets_dir else {}
        super().__init__(provider, name, {**props, **extra, "pid": None, "alive": None}, opts)


class _SecretFile(Resource):
    """A dynamic resource holding one secret file."""

    path: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(SecretFileProvider(), name, props, opts)


class TrackingServer(pulumi.ComponentResource):
    """A real `mlflow server` (tracking + model registry) on 127.0.0.1."""

    url: pulumi.Output[str]
    """The tracking/registry URI clients use."""
    tracking_uri: pulumi.Output[str]
    """The same URI under the name every target's tracking server exposes (TrackingCapability)."""
    pid: pulumi.Output[int]
    """PID of the server process (for `env status`; it is stopped by the provider)."""
    process: Resource
    """Escape hatch: the underlying dynamic resource."""

    def __init__(self, name: str, args: TrackingServerArgs, placement: LocalPlacement,
                 backend_store_uri: str | None = None, opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        placement.validate("placement")
        if backend_store_uri is not None and not backend_store_uri.startswith(("sqlite:///", "postgresql://")):
            raise ValueError(f"backend_store_uri: {backend_store_uri!r} is not valid; use sqlite:/// or postgresql://")
        super().__init__("shipway:local:TrackingServer", name, None, opts)
        data = Path(placement.data_dir)
        store = backend_store_uri or f"sqlite:///{data / 'mlflow.db'}"
        self.process = _Process(TrackingServerProvider(), f"{name}-server", {
            "shipwayKind": "TrackingServer",
            "host": LOOPBACK,
            "port": placement.port,
            "backendStoreUri": store,
            "artifactRoot": f"file://{data / 'artifacts'}",
            "dataDir": str(data),
            # The server's own /metrics (request counts and latency by status), scraped as job "mlflow".
            "metricsDir": str(data / "prometheus-metrics"),
            "environment": args.environment,
        }, pulumi.ResourceOptions(parent=self, retain_on_delete=False), placement)
        # Depend on the process so consumers wait until the server is healthy.
        self.url = self.process.pid.apply(lambda _pid: f"http://{LOOPBACK}:{placement.port}")
        self.tracking_uri = self.url
        self.pid = self.process.pid
        self.register_outputs({"url": self.url, "tracking_uri": self.tracking_uri, "pid": self.pid})


class Secrets(pulumi.ComponentResource):
    """Secret values as 0600 files for the processes that need them; values stay Pulumi secrets."""

    files: Mapping[str, pulumi.Output[str]]
    """Secret name -> path of its 0600 file."""

    def __init__(self, name: str, args: SecretsArgs, directory: str, opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        if not Path(directory).is_absolute():
            raise ValueError(f"directory: {directory!r} is not valid; use an absolute path")
        validate_secret_keys(args.values)
        super().__init__("shipway:local:Secrets", name, None, opts)
        files: dict[str, pulumi.Output[str]] = {}
        for key, value in sorted(args.values.items()):
            res = _SecretFile(f"{name}-{secret_slug(key)}", {
                "shipwayKind": "SecretFile",
                "path": str(Path(directory) / secret_slug(key)),
                "mode": "0600",
                "value": pulumi.Output.secret(value),
            }, pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]))
            files[key] = res.path
        self.files = files
        self.register_outputs({"files": files})


class InferenceEndpoint(pulumi.ComponentResource):
    """Shipway's serving app for one model version on 127.0.0.1 (hot-swapped on pin change)."""

    url: pulumi.Output[str]
    """Base URL of the endpoint (POST /invocations)."""
    endpoint_url: pulumi.Output[str]
    """The same URL under the name every target's endpoint exposes (EndpointCapability)."""
    model_version: pulumi.Output[int]
    """The exact registry version served."""
    api_key_file: pulumi.Output[str]
    """Path of the 0600 file holding the endpoint API key."""
    request_log: pulumi.Output[str]
    """JSON-lines log of inputs and predictions (drift batches, label joins)."""
    process: Resource
    """Escape hatch: the underlying dynamic resource."""

    def __init__(self, name: str, args: InferenceEndpointArgs, placement: LocalPlacement,
                 api_key_file: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        validate_model_pin(args.model_name, args.model_version)
        validate_tags(args.tags)
        validate_instance_count(args.environment, args.instance_count)
        reject_unsupported("local", "api_key", "<secret>" if args.api_key is not None else None,
                           "the key reaches the process as a 0600 file: pass api_key_file from Secrets.files")
        if args.instance_count != 1:
            raise ValueError(f"instance_count: {args.instance_count} is not valid on the local target; use 1 "
                             "(one process per model; zero-downtime comes from in-process hot swap)")
        placement.validate("placement")
        super().__init__("shipway:local:InferenceEndpoint", name, None, opts)
        data = Path(placement.data_dir)
        self.process = _Process(EndpointProvider(), f"{name}-server", {
            "shipwayKind": "InferenceEndpoint",
            "host": LOOPBACK,
            "port": placement.port,
            "modelName": args.model_name,
            "modelVersion": args.model_version,
            "trackingUri": args.tracking_uri,
            "apiKeyFile": api_key_file,
            "otlpEndpoint": args.otlp_endpoint,
            "environment": args.environment,
            "dataDir": str(data),
            "pinFile": str(data / "pin.json"),
            "requestLog": str(data / "requests.jsonl"),
            # Only when on: an endpoint without explanations keeps the inputs it always had.
            **({"explain": True} if args.explain else {}),
        }, pulumi.ResourceOptions(parent=self), placement)
        self.url = self.process.pid.apply(lambda _pid: f"http://{LOOPBACK}:{placement.port}")
        self.endpoint_url = self.url
        self.model_version = self.process.modelVersion  # type: ignore[attr-defined]
        self.api_key_file = pulumi.Output.from_input(api_key_file)
        self.request_log = pulumi.Output.from_input(str(data / "requests.jsonl"))
        self.register_outputs({"url": self.url, "endpoint_url": self.endpoint_url, "model_version": self.model_version,
                               "api_key_file": self.api_key_file, "request_log": self.request_log})


def prometheus_config(endpoints: Mapping[str, str], rule_file: str = "rules.yml",
                      alertmanager: str | None = None, supervisor_targets: str | None = None,
                      delivery: str | None = None, telemetry: Mapping[str, str] | None = None) -> str:
    """A scrape config for every endpoint (model label from the key), as YAML text; ``telemetry``
    adds one job per pipeline process (job name -> host:port serving /metrics)."""
    import yaml

    targets = [{"targets": [url.removeprefix("http://")], "labels": {"model": model}}
               for model, url in sorted(endpoints.items())]
    config: dict[str, Any] = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [rule_file],
        "scrape_configs": [
            {"job_name": "shipway-endpoints", "metrics_path": "/metrics", "static_configs": targets},
            {"job_name": "prometheus", "static_configs": [{"targets": ["__SELF__"]}]},
        ],
    }
    if supervisor_targets:
        # Each supervisor announces its ephemeral metrics port in a file here (restart counts).
        config["scrape_configs"].append({"job_name": "shipway-supervisors", "file_sd_configs": [
            {"files": [f"{supervisor_targets}/*.json"], "refresh_interval": "5s"}]})
    if delivery:
        # The audit trail's delivery figures: every model and env in the trail, labelled by both.
        config["scrape_configs"].append({"job_name": DELIVERY_JOB, "static_configs": [{"targets": [delivery]}]})
    for job, target in sorted((telemetry or {}).items()):
        config["scrape_configs"].append({"job_name": job, "static_configs": [{"targets": [target]}]})
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return yaml.safe_dump(config, sort_keys=False)


class Observability(pulumi.ComponentResource):
    """Debian's Prometheus scraping every endpoint with the generated SLO/drift rules, alerting
    into Debian's Alertmanager."""

    prometheus_url: pulumi.Output[str]
    """Prometheus web/API URL."""
    alertmanager_url: pulumi.Output[str]
    """Alertmanager web/API URL."""
    alerts_file: pulumi.Output[str] | None
    """JSON-lines file the local alert receiver records every notification to (None: no receiver)."""
    delivery_metrics_url: pulumi.Output[str] | None
    """The delivery exporter's /metrics (None: not run)."""
    process: Resource
    """Escape hatch: the Prometheus dynamic resource."""

    def __init__(self, name: str, args: ObservabilityArgs, placement: LocalPlacement, rules_yaml: str,
                 alertmanager: LocalPlacement, binaries: Mapping[str, str] | None = None,
                 alert_sink: LocalPlacement | None = None, delivery: LocalPlacement | None = None,
                 telemetry: Mapping[str, str] | None = None,
                 audit_log: str | None = None, opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        reject_unsupported("local", "log_retention_days", args.log_retention_days,
                           "local logs live in the stack's data directory until `make down`; leave it unset")
        placement.validate("placement")
        alertmanager.validate("alertmanager")
        if alert_sink is not None:
            alert_sink.validate("alert_sink")
        if delivery is not None:
            delivery.validate("delivery")
            if not audit_log or not Path(audit_log).is_absolute():
                raise ValueError(f"audit_log: {audit_log!r} is not valid; the delivery exporter needs the "
                                 "absolute path of the audit trail (<repo>/.shipway/audit/audit.jsonl)")
        found = {tool: (binaries or {}).get(tool) or shutil.which(tool) or f"/usr/bin/{tool}"
                 for tool in ("prometheus", "prometheus-alertmanager")}
        for tool, path in found.items():
            if not Path(path).exists():
                raise ValueError(f"binaries: {tool} not found at {path!r}; the project setup installs Debian's "
                                 f"`{tool}` package (run `make setup`)")
        super().__init__("shipway:local:Observability", name, None, opts)
        webhook = None
        self.alerts_file = None
        if alert_sink is not None:
            alerts_file = str(Path(alert_sink.data_dir) / "alerts.jsonl")
            sink = _Process(AlertSinkProvider(), f"{name}-alert-sink", {
                "shipwayKind": "AlertSink",
                "host": LOOPBACK,
                "port": alert_sink.port,
                "alertsFile": alerts_file,
                "dataDir": alert_sink.data_dir,
                "environment": args.environment,
            }, pulumi.ResourceOptions(parent=self), alert_sink)
            webhook = f"http://{LOOPBACK}:{alert_sink.port}/alerts"
            self.alerts_file = sink.pid.apply(lambda _pid: alerts_file)
        alerts = _Process(AlertmanagerProvider(), f"{name}-alertmanager", {
            "shipwayKind": "Alertmanager",
            "host": LOOPBACK,
            "port": alertmanager.port,
            "binary": found["prometheus-alertmanager"],
            "configYaml": alertmanager_config(webhook),
            "dataDir": alertmanager.data_dir,
            "environment": args.environment,
        }, pulumi.ResourceOptions(parent=self), alertmanager)
        am_target = f"{LOOPBACK}:{alertmanager.port}"
        self.delivery_metrics_url = None
        delivery_target = None
        waits: list[pulumi.Output[Any]] = [alerts.pid]
        if delivery is not None:
            exporter = _Process(DeliveryMetricsProvider(), f"{name}-delivery-metrics", {
                "shipwayKind": "DeliveryMetrics",
                "host": LOOPBACK,
                "port": delivery.port,
                "auditLog": audit_log,
                "dataDir": delivery.data_dir,
                "environment": args.environment,
            }, pulumi.ResourceOptions(parent=self), delivery)
            delivery_target = f"{LOOPBACK}:{delivery.port}"
            self.delivery_metrics_url = exporter.pid.apply(lambda _pid: f"http://{delivery_target}/metrics")
            waits.append(exporter.pid)
        endpoints = pulumi.Output.all(**dict(args.endpoints)) if args.endpoints else pulumi.Output.from_input({})
        config = pulumi.Output.all(endpoints, *waits).apply(
            lambda parts: prometheus_config(parts[0], alertmanager=am_target,
                                            supervisor_targets=placement.targets_dir,
                                            delivery=delivery_target, telemetry=telemetry).replace(
                "__SELF__", f"{LOOPBACK}:{placement.port}"))
        self.process = _Process(PrometheusProvider(), f"{name}-prometheus", {
            "shipwayKind": "Prometheus",
            "host": LOOPBACK,
            "port": placement.port,
            "binary": found["prometheus"],
            "configYaml": config,
            "rulesYaml": rules_yaml,
            "dataDir": placement.data_dir,
            "environment": args.environment,
        }, pulumi.ResourceOptions(parent=self), placement)
        self.prometheus_url = self.process.pid.apply(lambda _pid: f"http://{LOOPBACK}:{placement.port}")
        self.alertmanager_url = alerts.pid.apply(lambda _pid: f"http://{am_target}")
        self.register_outputs({"prometheus_url": self.prometheus_url, "alertmanager_url": self.alertmanager_url,
                               "alerts_file": self.alerts_file, "delivery_metrics_url": self.delivery_metrics_url})


def jaeger_config(host: str, otlp_port: int, query_port: int, metrics_port: int | None = None) -> str:
    """Jaeger v2 config: only what the local stack needs, every listener on loopback.

    Jaeger v2 is an OpenTelemetry Collector: with ``metrics_port`` its own metrics (spans
    received, refused, stored or failed: ``otelcol_receiver_*``/``otelcol_exporter_*``) are
    served at ``host:metrics_port/metrics`` for Prometheus; without it they are off (the
    collector default would bind 8888, the hub collector's port)."""
    import yaml

    metrics: dict[str, Any] = {"level": "none"}
    if metrics_port is not None:
        metrics = {"level": "normal", "readers": [{"pull": {"exporter": {"prometheus": {
            "host": host, "port": metrics_port, "without_type_suffix": False}}}}]}
    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": metrics, "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 50000}}}},
            "jaeger_query": {"storage": {"traces": "memstore"},
                             "http": {"endpoint": f"{host}:{query_port}"},
                             "grpc": {"endpoint": f"{host}:{query_port + 1}"}},
        },
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{host}:{otlp_port}"}}}},
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook_url: str | None = None) -> str:
    """Route every alert to one local receiver: the stack's alert sink (`shipway alerts`)."""
    import yaml

    receiver: dict[str, Any] = {"name": "local"}
    if webhook_url:
        # send_resolved: the sink records when an alert clears, not only when it fires.
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    config = {
        "route": {"receiver": "local", "group_by": ["alertname", "model"], "group_wait": "5s",
                  "group_interval": "30s", "repeat_interval": "4h"},
        "receivers": [receiver],
        # One incident, one notification: while an SLO pages, its ticket for the same model is held.
        "inhibit_rules": [{"source_matchers": ['severity="page"'], "target_matchers": ['severity="ticket"'],
                           "equal": ["alertname", "model"]}],
    }
    return yaml.safe_dump(config, sort_keys=False)


class Tracing(pulumi.ComponentResource):
    """A local Jaeger receiving every endpoint's OTLP traces."""

    otlp_endpoint: pulumi.Output[str]
    """OTLP/HTTP base URL the serving app exports to."""
    query_url: pulumi.Output[str]
    """Jaeger query API/UI URL."""
    scrape_targets: dict[str, str]
    """Prometheus job name -> host:port of Jaeger's own /metrics (empty without ``metrics_port``)."""
    process: Resource
    """Escape hatch: the underlying dynamic resource."""

    def __init__(self, name: str, environment: str, tags: Mapping[str, str], placement: LocalPlacement,
                 otlp_port: int, binary: str, metrics_port: int | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(tags)
        placement.validate("placement")
        taken = {"placement.port": placement.port, "placement.port+1 (gRPC query)": placement.port + 1,
                 "otlp_port": otlp_port}
        clash = [key for key, port in taken.items() if port == metrics_port]
        if metrics_port is not None and (not 1024 <= metrics_port <= 65535 or clash):
            why = f"already used by {clash[0]}" if clash else "use a port number 1024-65535"
            raise ValueError(f"metrics_port: {metrics_port!r} is not valid; {why}")
        if not Path(binary).exists():
            raise ValueError(f"binary: {binary!r} not found; the project setup builds Jaeger (run `make setup`)")
        super().__init__("shipway:local:Tracing", name, None, opts)
        self.process = _Process(JaegerProvider(), f"{name}-jaeger", {
            "shipwayKind": "Jaeger",
            "host": LOOPBACK,
            "port": placement.port,
            "otlpPort": otlp_port,
            **({"metricsPort": metrics_port} if metrics_port is not None else {}),
            "binary": binary,
            "configYaml": jaeger_config(LOOPBACK, otlp_port, placement.port, metrics_port),
            "dataDir": placement.data_dir,
            "environment": environment,
        }, pulumi.ResourceOptions(parent=self), placement)
        self.otlp_endpoint = self.process.pid.apply(lambda _pid: f"http://{LOOPBACK}:{otlp_port}")
        self.query_url = self.process.pid.apply(lambda _pid: f"http://{LOOPBACK}:{placement.port}")
        self.scrape_targets = {"jaeger": f"{LOOPBACK}:{metrics_port}"} if metrics_port is not None else {}
        self.register_outputs({"otlp_endpoint": self.otlp_endpoint, "query_url": self.query_url})


class TelemetryHub(pulumi.ComponentResource):
    """VictoriaLogs (the searchable log store) and the OpenTelemetry Collector in front of it and
    of Jaeger: the serving app sends spans to the collector, which also tails every platform
    process log into the store. The collector config comes from
    shipway_core.observability.collector, the one source every target uses."""

    otlp_endpoint: pulumi.Output[str]
    """The collector's OTLP/HTTP base URL (what the serving app exports spans to)."""
    log_store_url: pulumi.Output[str]
    """VictoriaLogs' URL (LogsQL at /select/logsql/query, web UI at /select/vmui)."""
    scrape_targets: dict[str, str]
    """Prometheus job name -> host:port of the process's /metrics (otelcol, victorialogs)."""

    def __init__(self, name: str, environment: str, tags: Mapping[str, str], *, log_store: LocalPlacement,
                 collector: LocalPlacement, otlp_grpc_port: int, metrics_port: int, retention: str,
                 traces_endpoint: pulumi.Input[str], log_sources: list[LogSource],
                 binaries: Mapping[str, str], opts: pulumi.ResourceOptions | None = None):
        validate_tags(tags)
        log_store.validate("log_store")
        collector.validate("collector")
        for tool in ("victoria-logs", "otelcol-shipway"):
            path = binaries.get(tool, "")
            if not Path(path).exists():
                raise ValueError(f"binaries: {tool} not found at {path!r}; the project setup builds it from Go "
                                 "modules (run `make setup`)")
        super().__init__("shipway:local:TelemetryHub", name, None, opts)
        store = _Process(LogStoreProvider(), f"{name}-victorialogs", {
            "shipwayKind": "LogStore",
            "host": LOOPBACK,
            "port": log_store.port,
            "binary": binaries["victoria-logs"],
            "retention": retention,
            "dataDir": log_store.data_dir,
            "environment": environment,
        }, pulumi.ResourceOptions(parent=self), log_store)
        store_url = f"http://{LOOPBACK}:{log_store.port}"

        def config(trace_url: str) -> str:
            return render_collector_yaml(collector_config(CollectorSpec(
                host=LOOPBACK, otlp_grpc_port=otlp_grpc_port, otlp_http_port=collector.port,
                metrics_port=metrics_port, traces_endpoint=trace_url, log_store_url=store_url,
                log_sources=tuple(log_sources), storage_dir=str(Path(collector.data_dir) / "storage"),
                environment=environment)))

        hub = _Process(CollectorProvider(), f"{name}-otelcol", {
            "shipwayKind": "Collector",
            "host": LOOPBACK,
            "port": collector.port,
            "metricsPort": metrics_port,
            "binary": binaries["otelcol-shipway"],
            "configYaml": pulumi.Output.all(pulumi.Output.from_input(traces_endpoint), store.pid).apply(
                lambda parts: config(parts[0])),
            "dataDir": collector.data_dir,
            "environment": environment,
        }, pulumi.ResourceOptions(parent=self), collector)
        self.otlp_endpoint = hub.pid.apply(lambda _pid: f"http://{LOOPBACK}:{collector.port}")
        self.log_store_url = store.pid.apply(lambda _pid: store_url)
        self.scrape_targets = {"otelcol": f"{LOOPBACK}:{metrics_port}", "victorialogs": f"{LOOPBACK}:{log_store.port}"}
        self.register_outputs({"otlp_endpoint": self.otlp_endpoint, "log_store_url": self.log_store_url})
