"""Pipeline health: alert rules for the platform's own processes (not the models).

The telemetry pipeline fails quietly: a dead collector or a full log-store disk shows up as
*missing* evidence, hours later, when someone needs it. These rules page on what Prometheus
can see of it: a pipeline job's ``up``, the collector's failed/dropped exports, the trace store's
(Jaeger's) refused or unstored spans, the MLflow server's 5xx share, the log store's
ingestion errors and its free disk (``vl_free_disk_space_bytes`` is measured on the data root's
filesystem, which the local stack shares with MLflow's data; docs/runbooks/ShipwayPipelineDiskLow.md).
"""

from __future__ import annotations

import re
from typing import Any

PIPELINE_JOBS = ("otelcol", "victorialogs", "prometheus", "alertmanager", "jaeger", "mlflow")
"""Prometheus job names of the pipeline's processes (a stack scrapes those it runs)."""
MLFLOW_JOB = "mlflow"
"""The tracking server's job on every target that scrapes it (local config, Kubernetes Service label)."""
COLLECTOR_JOB = "otelcol"
"""The OpenTelemetry Collector's own metrics, likewise."""

PIPELINE_ALERT_NAMES = (
    "ShipwayPipelineComponentDown",
    "ShipwayTelemetryDropped",
    "ShipwayLogIngestionErrors",
    "ShipwayTraceIngestionErrors",
    "ShipwayRegistryErrors",
    "ShipwayPipelineDiskLow",
)

# Collector self-metrics (Prometheus names of otelcol v0.165): exports that failed after retries
# or could not be queued, and records a processor dropped or refused (memory limiter).
DROPPED = tuple(f"otelcol_{kind}_{signal}_total" for kind in (
    "exporter_send_failed", "exporter_enqueue_failed", "processor_dropped", "processor_refused")
    for signal in ("spans", "log_records"))
# Jaeger v2 is an OpenTelemetry Collector too: spans its OTLP receiver refused or failed to
# take, and spans its storage exporter failed to write, are spans the trace store lost.
TRACE_STORE_ERRORS = ("otelcol_receiver_refused_spans_total", "otelcol_receiver_failed_spans_total",
                      "otelcol_exporter_send_failed_spans_total", "otelcol_exporter_enqueue_failed_spans_total")
# The MLflow server's own counter (prometheus_flask_exporter behind `mlflow server --expose-prometheus`).
MLFLOW_REQUESTS = "mlflow_http_request_total"


def summed_rates(metrics: tuple[str, ...], job: str, window: str = "5m") -> str:
    """The summed per-second rate of ``metrics`` per (job, instance) of ``job``.

    One ``rate({__name__=~"a|b"})`` would be shorter but wrong: rate() drops the metric name, so
    two counters with the same labels (Jaeger's receiver refused/failed spans do) make the
    rule fail to evaluate ("vector cannot contain metrics with the same labelset"). Each counter
    is summed on its own instead, a missing one counting as 0 for every scraped instance."""
    zero = f'0 * sum by (job, instance) (up{{job="{job}"}})'
    parts = [f'(sum by (job, instance) (rate({m}{{job="{job}"}}[{window}])) or {zero})' for m in metrics]
    return "\n  + ".join(parts)


_JOB = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


def pipeline_alerts(jobs: tuple[str, ...], environment: str, *, runbook_base_url: str = "docs/runbooks",
                    down_for: str = "2m", min_free_ratio: float = 0.1) -> list[dict[str, Any]]:
    """Down / dropped telemetry / trace and log ingestion errors / registry errors / low disk,
    for the scraped ``jobs``."""
    for job in jobs:
        if not _JOB.match(job):
            raise ValueError(f"pipeline job: {job!r} is not a Prometheus job name; use letters, digits, _ and -")
    if not 0 < min_free_ratio < 1:
        raise ValueError(f"min_free_ratio: {min_free_ratio!r} is not valid; use a fraction between 0 and 1")
    if not jobs:
        return []

    def alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
        return {"alert": name, "expr": expr, "for": duration,
                "labels": {"severity": severity, "environment": environment, "component": "pipeline"},
                "annotations": {"summary": summary, "description": description,
                                "runbook_url": f"{runbook_base_url.rstrip('/')}/{name}.md"}}

    matcher = "|".join(sorted(jobs))
    rules = [alert(
        "ShipwayPipelineComponentDown", f'up{{job=~"{matcher}"}} == 0', down_for, "page",
        "Pipeline component {{ $labels.job }} ({{ $labels.instance }}) is down",
        f"Prometheus has failed to scrape {{{{ $labels.job }}}} at {{{{ $labels.instance }}}} for {down_for}: "
        "traces, logs, alerts or the registry it carries are not being recorded.")]
    if "otelcol" in jobs:
        rules.append(alert(
            "ShipwayTelemetryDropped", f'{summed_rates(DROPPED, "otelcol")}\n  > 0',
            "5m", "ticket",
            "The collector is losing spans or log records",
            'The OpenTelemetry Collector failed to export or dropped {{ $value | printf "%.2f" }} records/s '
            "over 5m (exporter send/enqueue failures, processor drops or memory-limiter refusals)."))
    if "jaeger" in jobs:
        rules.append(alert(
            "ShipwayTraceIngestionErrors",
            f'{summed_rates(TRACE_STORE_ERRORS, "jaeger")}\n  > 0',
            "5m", "ticket",
            "The trace store is refusing or failing to store spans",
            'Jaeger refused, failed to receive or failed to store {{ $value | printf "%.2f" }} spans/s over 5m; '
            "traces of those requests are missing from the trace search."))
    if "mlflow" in jobs:
        rules.append(alert(
            "ShipwayRegistryErrors",
            # A share, held for 10m: one failed call is not an incident, a failing registry is
            # (promotion pre-flight, pins and serving start-up all read it).
            f'sum by (job, instance) (rate({MLFLOW_REQUESTS}{{job="mlflow",status=~"5.."}}[5m]))\n'
            f'  / sum by (job, instance) (rate({MLFLOW_REQUESTS}{{job="mlflow"}}[5m])) > 0.05',
            "10m", "ticket",
            "The MLflow tracking server and registry is failing requests",
            '{{ $value | humanizePercentage }} of the MLflow server\'s requests answered 5xx over 5m: '
            "runs, registrations, promotion pre-flights and model loads may fail."))
    if "victorialogs" in jobs:
        rules.append(alert(
            "ShipwayLogIngestionErrors",
            # insert errors (path /insert/...) and dropped rows (no path label; "debug" rows are on purpose)
            'sum by (job, instance) (rate({__name__=~"vl_http_errors_total|vl_rows_dropped_total",'
            'job="victorialogs",path=~"(/insert/.*)?",reason!="debug"}[5m])) > 0',
            "5m", "ticket",
            "The log store is rejecting or dropping log lines",
            'VictoriaLogs answered insert errors or dropped rows at {{ $value | printf "%.2f" }}/s over 5m.'))
        rules.append(alert(
            "ShipwayPipelineDiskLow",
            f'min by (job, instance, path) (vl_free_disk_space_bytes{{job="victorialogs"}}\n'
            f'  / vl_total_disk_space_bytes{{job="victorialogs"}}) < {min_free_ratio}',
            "10m", "page",
            "Free disk under the log store ({{ $labels.path }}) is low",
            'Only {{ $value | humanizePercentage }} of the filesystem holding {{ $labels.path }} is free; the log '
            "store stops accepting lines when it is full, and the local data root (MLflow's runs and artifacts) "
            "shares it."))
    return rules
