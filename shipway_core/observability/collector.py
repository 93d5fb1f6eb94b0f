"""The OpenTelemetry Collector configuration, generated from one source for every target.

The local stack runs it (tools/otelcol builds the distribution: core v0.165.0 + contrib
v0.165.1), the Kubernetes target deploys its variant (``kubernetes_collector_config``: the same
receiver, processors and queued export, plus k8sattributes), and the AWS/Azure docs point ADOT / the Azure
Monitor exporter at the same pipeline shape:

- traces: OTLP in (gRPC + HTTP) from the serving app -> memory_limiter + batch -> OTLP to the
  trace store (Jaeger on local);
- logs: a ``filelog`` receiver per platform process log (JSON lines: the serving app's request
  and event log, the supervisors' restart lines; MLflow's text lines are kept as they are)
  -> memory_limiter + batch -> OTLP/HTTP to the log store (VictoriaLogs'
  ``/insert/opentelemetry/v1/logs``), with a bounded sending queue + retry, persisted by the
  ``file_storage`` extension where a directory is given, so a log-store outage is buffered
  and resent.

Health and metrics-scrape noise never reaches the stores: the serving app makes no span for
its probe routes, and the ``filter`` stanza operator drops their request log lines (the
contrib filter/transform processors do not build at v0.165.x, see docs/engine.md).

Each log record carries ``service.name`` (resource), ``model``, ``version``, ``trace_id``,
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
    """The Kubernetes target's collector (the upstream k8s distribution image): the same OTLP
    receiver, memory_limiter + batch and queued OTLP/HTTP export as the local hub, plus
    k8sattributes, a Prometheus exporter for its metrics pipeline and a health_check. Pods ship
    logs over OTLP there (no file_log). Component names are the ones its image version knows."""
    exporters: dict[str, Any] = {"debug": {"verbosity": "basic"},
                                 "prometheus": {"endpoint": f"0.0.0.0:{metrics_port}"}}
    out = ["debug"]
    if export_endpoint:
        exporters["otlphttp"] = {"endpoint": export_endpoint, **queued_retry(queue_size)}
        out = ["otlphttp"]
    processors = ["memory_limiter", "k8sattributes", "batch"]
    pod = "0.0.0.0"  # noqa: S104 - a pod listens in its own network namespace, behind a NetworkPolicy
    return {
        "receivers": {"otlp": otlp_receiver(pod, grpc_port, http_port)},
        "processors": {
            # A share of the container's memory limit (the pod spec sets it), not a fixed size.
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "k8sattributes": {
                "auth_type": "serviceAccount",
                "filter": {"namespace": namespace},
                "extract": {"metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name"]},
            },
            "batch": BATCH,
        },
        "exporters": exporters,
        "extensions": {"health_check": {"endpoint": f"0.0.0.0:{health_port}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": processors, "exporters": out},
                "logs": {"receivers": ["otlp"], "processors": processors, "exporters": out},
                "metrics": {"receivers": ["otlp"], "processors": processors,
                            "exporters": sorted({"prometheus", *out} - {"debug"})},
            },
        },
    }


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
    """The collector configuration for ``spec`` as a dict (``render_yaml`` for the file)."""
    _validate(spec)
    config: dict[str, Any] = {"extensions": {}, "receivers": {}, "processors": {}, "exporters": {}}
    service: dict[str, Any] = {
        "extensions": [],
        "pipelines": {},
        "telemetry": {
            "logs": {"level": "info"},
            "metrics": {"level": "normal", "readers": [{"pull": {"exporter": {"prometheus": {
                "host": spec.host, "port": spec.metrics_port, "without_type_suffix": False}}}}]},
        },
    }
    config["processors"] = {
        "memory_limiter": {"check_interval": "1s", "limit_mib": spec.memory_limit_mib,
                           "spike_limit_mib": max(spec.memory_limit_mib // 4, 16)},
        "batch": dict(BATCH),
    }
    storage: str | None = None
    if spec.storage_dir:
        config["extensions"]["file_storage"] = {"directory": spec.storage_dir, "create_directory": True}
        service["extensions"].append("file_storage")
        storage = "file_storage"
    if spec.traces_endpoint:
        config["receivers"]["otlp"] = otlp_receiver(spec.host, spec.otlp_grpc_port, spec.otlp_http_port)
        config["exporters"]["otlp_http/traces"] = {
            "traces_endpoint": spec.traces_endpoint.rstrip("/") + "/v1/traces", **queued_retry(spec.queue_size)}
        service["pipelines"]["traces"] = {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                                          "exporters": ["otlp_http/traces"]}
    if spec.log_sources:
        receivers = []
        for source in spec.log_sources:
            name = f"file_log/{source.service}"
            receiver: dict[str, Any] = {"include": [source.path], "start_at": "beginning",
                                        "poll_interval": "200ms", "operators": _operators(source.service)}
            if storage:
                receiver["storage"] = storage  # offsets survive a collector restart
            config["receivers"][name] = receiver
            receivers.append(name)
        assert spec.log_store_url is not None  # _validate
        config["exporters"]["otlp_http/logs"] = {
            "logs_endpoint": spec.log_store_url.rstrip("/") + LOG_STORE_OTLP_PATH,
            "headers": {"VL-Stream-Fields": "service.name,model"},
            **queued_retry(spec.queue_size, storage),
        }
        service["pipelines"]["logs"] = {"receivers": receivers, "processors": ["memory_limiter", "batch"],
                                        "exporters": ["otlp_http/logs"]}
    if not service["pipelines"]:
        raise ValueError("collector: no pipeline; give traces_endpoint and/or log_store_url with log_sources")
    if not service["extensions"]:
        del service["extensions"]
    config["service"] = service
    return {k: v for k, v in config.items() if v}


def render_yaml(config: Mapping[str, Any]) -> str:
    """The configuration as the YAML file the collector reads (``--config=file:...``)."""
    import yaml

    return yaml.safe_dump(dict(config), sort_keys=False)
