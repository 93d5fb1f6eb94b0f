"""The OpenTelemetry Collector configuration, generated from one source for every target.

``pipeline_config`` is the one function; each target only says where its collector listens,
what it adds to a record and where each signal goes (``TargetExport``):

- local (``collector_config``): the distribution tools/otelcol builds (core v0.165.0 + contrib
  v0.165.1) on 127.0.0.1; traces over OTLP to Jaeger, logs tailed by ``filelog`` receivers to
  VictoriaLogs' ``/insert/opentelemetry/v1/logs``, both through a bounded sending queue + retry,
  persisted by the ``file_storage`` extension, so a log-store outage is buffered and resent;
- kubernetes (``kubernetes_collector_config``): the upstream k8s distribution image, OTLP in,
  k8sattributes, queued OTLP/HTTP export to the stack's backend and a Prometheus exporter;
- aws (``adot_collector_config``): ADOT, traces to X-Ray, metrics remote-written to AMP with
  SigV4 (log lines reach CloudWatch Logs through SageMaker's own container log capture);
- azure (``azure_monitor_collector_config``): the contrib image's Azure Monitor exporter, traces
  and metrics to Application Insights (console lines reach Log Analytics through Azure ML).

What is the same everywhere, and tested across the four (tests/unit/test_collector_config.py):
the OTLP receiver's protocols, ``memory_limiter`` first (refusing at its limit with a 20 %
spike allowance, checked every second), ``batch`` last with one batch size and timeout, and the
same probe routes (``PROBE_ROUTES``) kept out of the stores: by a ``filter`` processor where
the collector receives OTLP, by the ``filter`` stanza operator where it tails files (the contrib
filter/transform processors do not build at v0.165.x here, see docs/engine.md; the serving app
also makes no span for its probe routes).

Each local log record carries ``service.name`` (resource), ``model``, ``version``, ``trace_id``,
``span_id`` and ``level`` (attributes) and its message as the body (VictoriaLogs' ``_msg``),
so ``model:"iris-classifier" trace_id:"..."`` finds one request's line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Routes whose requests are probes or scrapes: no span (shipway/serving/app.py PROBE_ROUTES)
# and no record in the log store (dropped here).
PROBE_ROUTES: tuple[str, ...] = ("/health", "/ping", "/ready", "/metrics")
# The components tools/otelcol/components.go builds in; a config naming others cannot start.
COMPONENTS: Mapping[str, frozenset[str]] = {
    "receivers": frozenset({"otlp", "file_log"}),
    "processors": frozenset({"batch", "memory_limiter"}),
    "exporters": frozenset({"otlp", "otlp_http", "debug"}),
    "extensions": frozenset({"file_storage"}),
}
COLLECTOR_VERSION = "0.165.0"
LOG_STORE_OTLP_PATH = "/insert/opentelemetry/v1/logs"
BATCH: Mapping[str, Any] = {"send_batch_size": 1024, "timeout": "1s"}


@dataclass(frozen=True)
class LogSource:
    """One process log file the collector tails: its service name and path (glob allowed)."""

    service: str
    path: str


@dataclass(frozen=True)
class CollectorSpec:
    """What differs between targets; the pipeline shape does not."""

    host: str  # listen address of the OTLP receivers and the collector's own metrics
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    metrics_port: int = 8888
    # OTLP/HTTP base URL of the trace store (None: no trace pipeline)
    traces_endpoint: str | None = None
    # Base URL of VictoriaLogs (its OTLP logs path is appended); None: no log pipeline
    log_store_url: str | None = None
    log_sources: Sequence[LogSource] = field(default_factory=tuple)
    # file_storage directory for the queue and the filelog offsets (None: in memory only)
    storage_dir: str | None = None
    queue_size: int = 5000  # batches held while the log store is away (bounded)
    memory_limit_mib: int = 256
    environment: str = "local"


SIGNALS = ("traces", "metrics", "logs")
SPIKE_SHARE = 0.2  # memory_limiter's spike allowance, a share of its limit on every target


def memory_limiter(limit_mib: int | None = None) -> dict[str, Any]:
    """The memory rule of every target: refuse data at the limit, keep a 20 % spike allowance,
    check every second. ``limit_mib`` locally (a process on a shared machine); elsewhere 80 % of
    the memory limit the container runs under (the pod spec, the ECS task, the container app)."""
    if limit_mib is None:
        return {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": int(SPIKE_SHARE * 100)}
    return {"check_interval": "1s", "limit_mib": limit_mib, "spike_limit_mib": max(int(limit_mib * SPIKE_SHARE), 16)}


def probe_filter() -> dict[str, Any]:
    """A ``filter`` processor (contrib; OTTL) dropping spans and log records of ``PROBE_ROUTES``."""
    routes = "^(" + "|".join(PROBE_ROUTES) + ")$"
    return {"error_mode": "ignore",
            "traces": {"span": [f'IsMatch(attributes["http.route"], "{routes}")',
                                f'IsMatch(attributes["url.path"], "{routes}")']},
            "logs": {"log_record": [f'IsMatch(attributes["route"], "{routes}")']}}


@dataclass(frozen=True)
class TargetExport:
    """What one target's collector does its own way; the pipeline shape is ``pipeline_config``'s."""

    target: str  # local | kubernetes | aws | azure
    host: str  # listen address of the OTLP receiver
    exporters: Mapping[str, Mapping[str, Any]]  # exporter id -> config
    routes: Mapping[str, Sequence[str]]  # signal (traces/metrics/logs) -> exporter ids
    grpc_port: int = 4317
    http_port: int = 4318
    # Processors that add to a record (k8sattributes, resource), between memory_limiter and batch.
    enrich: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extensions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    memory_limit_mib: int | None = None  # None: a share of the container's memory limit
    # Receivers of the logs pipeline instead of OTLP (local: filelog, probe lines dropped there).
    log_receivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    telemetry: Mapping[str, Any] | None = None  # the collector's own logs/metrics settings
    # Whether the distribution has the contrib filter processor (local's does not build at
    # v0.165.x: its probe spans are never made by the app, its probe lines dropped by filelog).
    filter_processor: bool = True


def pipeline_config(t: TargetExport) -> dict[str, Any]:
    """The collector configuration of one target: OTLP (or filelog) in -> memory_limiter ->
    the target's enrichers -> the probe filter -> batch -> the target's exporters, per signal."""
    for signal, names in t.routes.items():
        if signal not in SIGNALS:
            raise ValueError(f"routes: {signal!r} is not a signal; use {', '.join(SIGNALS)}")
        unknown = [n for n in names if n not in t.exporters]
        if not names or unknown:
            raise ValueError(f"routes.{signal}: {list(names)!r} is not valid; name exporters of this target "
                             f"({', '.join(sorted(t.exporters))})")
    if not t.routes:
        raise ValueError("collector: no pipeline; give traces_endpoint and/or log_store_url with log sources")
    processors: dict[str, Any] = {"memory_limiter": memory_limiter(t.memory_limit_mib), **t.enrich}
    # Where records arrive over OTLP, a filter processor drops probe noise; tailed files drop it
    # in their receiver's operators (local, whose distribution has no filter processor).
    otlp_fed = [s for s in ("traces", "logs") if t.filter_processor and s in t.routes
                and not (s == "logs" and t.log_receivers)]
    if otlp_fed:
        processors["filter/probes"] = probe_filter()
    processors["batch"] = dict(BATCH)
    pipelines: dict[str, Any] = {}
    for signal in SIGNALS:
        if signal not in t.routes:
            continue
        chain = ["memory_limiter", *t.enrich, *(["filter/probes"] if signal in otlp_fed else []), "batch"]
        inputs = list(t.log_receivers) if signal == "logs" and t.log_receivers else ["otlp"]
        pipelines[signal] = {"receivers": inputs, "processors": chain, "exporters": list(t.routes[signal])}
    receivers: dict[str, Any] = dict(t.log_receivers) if "logs" in t.routes else {}
    if any("otlp" in p["receivers"] for p in pipelines.values()):
        receivers = {"otlp": otlp_receiver(t.host, t.grpc_port, t.http_port), **receivers}
    service: dict[str, Any] = {"pipelines": pipelines}
    if t.extensions:
        service = {"extensions": list(t.extensions), **service}
    if t.telemetry:
        service["telemetry"] = dict(t.telemetry)
    config = {"extensions": dict(t.extensions), "receivers": receivers, "processors": processors,
              "exporters": {k: dict(v) for k, v in t.exporters.items()}, "service": service}
    return {k: v for k, v in config.items() if v}


def _validate(spec: CollectorSpec) -> None:
    for name in ("otlp_grpc_port", "otlp_http_port", "metrics_port"):
        port = getattr(spec, name)
        if not isinstance(port, int) or not 1024 <= port <= 65535:
            raise ValueError(f"collector.{name}: {port!r} is not valid; use a port number 1024-65535")
    if len({spec.otlp_grpc_port, spec.otlp_http_port, spec.metrics_port}) != 3:
        raise ValueError(f"collector ports: gRPC {spec.otlp_grpc_port}, HTTP {spec.otlp_http_port} and metrics "
                         f"{spec.metrics_port} must differ; give each its own port")
    if spec.queue_size < 1:
        raise ValueError(f"collector.queue_size: {spec.queue_size!r} is not valid; use a positive number of batches")
    if spec.log_sources and not spec.log_store_url:
        raise ValueError("collector.log_store_url: None is not valid with log sources; give the log store's URL")


def otlp_receiver(host: str, grpc_port: int, http_port: int) -> dict[str, Any]:
    """The OTLP receiver every target's collector runs (gRPC + HTTP)."""
    return {"protocols": {"grpc": {"endpoint": f"{host}:{grpc_port}"}, "http": {"endpoint": f"{host}:{http_port}"}}}


def queued_retry(queue_size: int, storage: str | None = None) -> dict[str, Any]:
    """A bounded sending queue (optionally persisted) with retry that never gives up on its own:
    while the backend is away, the queue, not a timer, sets how much is held."""
    queue: dict[str, Any] = {"enabled": True, "queue_size": queue_size}
    if storage:
        queue["storage"] = storage
    return {"sending_queue": queue,
            "retry_on_failure": {"enabled": True, "initial_interval": "1s", "max_interval": "5s",
                                 "max_elapsed_time": "0s"}}


def kubernetes_collector_config(namespace: str, export_endpoint: str | None, *, grpc_port: int = 4317,
                                http_port: int = 4318, metrics_port: int = 8889, health_port: int = 13133,
                                queue_size: int = 5000) -> dict[str, Any]:
    """The Kubernetes target's collector (the upstream k8s distribution image): the local hub's
    OTLP receiver, memory_limiter + batch and queued OTLP/HTTP export, plus k8sattributes, a
    Prometheus exporter for its metrics pipeline and a health_check. Pods ship logs over OTLP
    there (no file_log). Component names are the ones its image version knows."""
    exporters: dict[str, Any] = {"prometheus": {"endpoint": f"0.0.0.0:{metrics_port}"}}
    if export_endpoint:
        exporters["otlphttp"] = {"endpoint": export_endpoint, **queued_retry(queue_size)}
        out = ["otlphttp"]
    else:  # no backend yet: records are logged by the collector, so the pipeline still runs
        exporters["debug"] = {"verbosity": "basic"}
        out = ["debug"]
    pod = "0.0.0.0"  # noqa: S104 - a pod listens in its own network namespace, behind a NetworkPolicy
    return pipeline_config(TargetExport(
        target="kubernetes", host=pod, grpc_port=grpc_port, http_port=http_port, exporters=exporters,
        routes={"traces": out, "metrics": sorted({"prometheus", *out} - {"debug"}), "logs": out},
        enrich={"k8sattributes": {
            "auth_type": "serviceAccount",
            "filter": {"namespace": namespace},
            "extract": {"metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name"]},
        }},
        extensions={"health_check": {"endpoint": f"{pod}:{health_port}"}}))


def _environment(environment: str) -> dict[str, Any]:
    """A ``resource`` processor stamping the environment on every record (cloud collectors serve
    one environment's workloads; on local and Kubernetes the app sets it)."""
    return {"resource": {"attributes": [
        {"key": "deployment.environment", "value": environment, "action": "upsert"}]}}


def adot_collector_config(region: str, remote_write_url: str, environment: str) -> dict[str, Any]:
    """The AWS target's collector (ADOT): traces to X-Ray, metrics remote-written to the AMP
    workspace with SigV4. It runs as its own task in the private subnets (SageMaker containers
    cannot reach a sidecar): its security group, not the bind address, decides who may send. No
    logs pipeline: SageMaker already ships each container's log lines to CloudWatch Logs
    (``/aws/sagemaker/Endpoints/<endpoint>``), the log store there. No Prometheus receiver: a
    SageMaker container has no scrapable address (docs/slos.md, "AWS and Prometheus")."""
    task = "0.0.0.0"  # noqa: S104 - the task's security group decides who may send
    return pipeline_config(TargetExport(
        target="aws", host=task,
        exporters={"awsxray": {"region": region, "indexed_attributes": ["model", "version"]},
                   "prometheusremotewrite": {"endpoint": remote_write_url, "auth": {"authenticator": "sigv4auth"}}},
        routes={"traces": ["awsxray"], "metrics": ["prometheusremotewrite"]}, enrich=_environment(environment),
        extensions={"health_check": {}, "sigv4auth": {"region": region, "service": "aps"}}))


AZURE_CONNECTION_STRING_ENV = "APPLICATIONINSIGHTS_CONNECTION_STRING"


def azure_monitor_collector_config(environment: str) -> dict[str, Any]:
    """The Azure target's collector (contrib image, Azure Monitor exporter): traces and metrics to
    Application Insights. The connection string is read from the collector's environment
    (``APPLICATIONINSIGHTS_CONNECTION_STRING``, the value ``otel_config`` carries as a secret),
    never written into the config. No logs pipeline: an online deployment's console lines already
    reach Log Analytics (``AmlOnlineEndpointConsoleLog``, what the drift alert reads)."""
    host = "0.0.0.0"  # noqa: S104 - a container listens in its own network namespace (private VNet)
    return pipeline_config(TargetExport(
        target="azure", host=host,
        exporters={"azuremonitor": {"connection_string": "${env:" + AZURE_CONNECTION_STRING_ENV + "}"}},
        routes={"traces": ["azuremonitor"], "metrics": ["azuremonitor"]}, enrich=_environment(environment),
        extensions={"health_check": {}}))


def _operators(service: str) -> list[dict[str, Any]]:
    """Stanza operators: parse a JSON line into attributes, drop probe lines, set the body."""
    probes = ", ".join(f'"{r}"' for r in PROBE_ROUTES)
    return [
        # Non-JSON lines (MLflow's own text log) pass as they are: the line is the body.
        {"type": "json_parser", "parse_from": "body", "parse_to": "attributes", "on_error": "send_quiet",
         "if": 'body startsWith "{"', "severity": {"parse_from": "attributes.level", "if": "attributes.level != nil"},
         "timestamp": {"parse_from": "attributes.ts", "if": "attributes.ts != nil", "layout_type": "gotime",
                       "layout": "2006-01-02T15:04:05.999999999Z07:00"}},
        {"type": "filter", "expr": f"attributes.route != nil and attributes.route in [{probes}]"},
        # The line's message is the record's body (VictoriaLogs' _msg): its message, else its
        # event name, else method + route + status for a request line.
        {"type": "add", "if": "attributes.event != nil", "field": "body", "value": "EXPR(attributes.event)"},
        {"type": "move", "if": "attributes.message != nil", "from": "attributes.message", "to": "body"},
        {"type": "add", "if": "attributes.event == nil and attributes.route != nil", "field": "body",
         "value": 'EXPR(attributes.method + " " + attributes.route + " " + string(attributes.status))'},
        {"type": "add", "field": 'resource["service.name"]', "value": service},
    ]


def collector_config(spec: CollectorSpec) -> dict[str, Any]:
    """The local collector configuration for ``spec`` as a dict (``render_yaml`` for the file)."""
    _validate(spec)
    exporters: dict[str, Any] = {}
    routes: dict[str, list[str]] = {}
    extensions: dict[str, Any] = {}
    storage: str | None = None
    if spec.storage_dir:
        extensions["file_storage"] = {"directory": spec.storage_dir, "create_directory": True}
        storage = "file_storage"
    if spec.traces_endpoint:
        exporters["otlp_http/traces"] = {
            "traces_endpoint": spec.traces_endpoint.rstrip("/") + "/v1/traces", **queued_retry(spec.queue_size)}
        routes["traces"] = ["otlp_http/traces"]
    log_receivers: dict[str, Any] = {}
    if spec.log_sources:
        for source in spec.log_sources:
            receiver: dict[str, Any] = {"include": [source.path], "start_at": "beginning",
                                        "poll_interval": "200ms", "operators": _operators(source.service)}
            if storage:
                receiver["storage"] = storage  # offsets survive a collector restart
            log_receivers[f"file_log/{source.service}"] = receiver
        assert spec.log_store_url is not None  # _validate
        exporters["otlp_http/logs"] = {
            "logs_endpoint": spec.log_store_url.rstrip("/") + LOG_STORE_OTLP_PATH,
            "headers": {"VL-Stream-Fields": "service.name,model"},
            **queued_retry(spec.queue_size, storage),
        }
        routes["logs"] = ["otlp_http/logs"]
    return pipeline_config(TargetExport(
        target="local", host=spec.host, grpc_port=spec.otlp_grpc_port, http_port=spec.otlp_http_port,
        exporters=exporters, routes=routes, extensions=extensions, memory_limit_mib=spec.memory_limit_mib,
        log_receivers=log_receivers, filter_processor=False,
        telemetry={"logs": {"level": "info"},
                   "metrics": {"level": "normal", "readers": [{"pull": {"exporter": {"prometheus": {
                       "host": spec.host, "port": spec.metrics_port, "without_type_suffix": False}}}}]}}))


def render_yaml(config: Mapping[str, Any]) -> str:
    """The configuration as the YAML file the collector reads (``--config=file:...``)."""
    import yaml

    return yaml.safe_dump(dict(config), sort_keys=False)
