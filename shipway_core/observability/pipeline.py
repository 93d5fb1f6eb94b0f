"""Pipeline health: alert rules for the platform's own processes (not the models).

The telemetry pipeline fails quietly: a dead collector or a full log-store disk shows up as
*missing* evidence, hours later, when someone needs it. These rules page on what Prometheus
can see of it: a pipeline job's ``up``, the collector's failed/dropped exports, the log store's
ingestion errors and its free disk (``vl_free_disk_space_bytes`` is measured on the data root's
filesystem, which the local stack shares with MLflow's data; docs/runbooks/ShipwayPipelineDiskLow.md).
"""

from __future__ import annotations

import re
from typing import Any

PIPELINE_JOBS = ("otelcol", "victorialogs", "prometheus", "alertmanager", "jaeger", "mlflow")
"""Prometheus job names of the pipeline's processes (a stack scrapes those it runs)."""

PIPELINE_ALERT_NAMES = (
    "ShipwayPipelineComponentDown",
    "ShipwayTelemetryDropped",
    "ShipwayLogIngestionErrors",
    "ShipwayPipelineDiskLow",
)

# Collector self-metrics (Prometheus names of otelcol v0.165): exports that failed after retries
# or could not be queued, and records a processor dropped or refused (memory limiter).
DROPPED = ('{__name__=~"otelcol_exporter_(send|enqueue)_failed_(spans|log_records)(_total)?'
           '|otelcol_processor_(dropped|refused)_(spans|log_records)(_total)?"}')
_JOB = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


def pipeline_alerts(jobs: tuple[str, ...], environment: str, *, runbook_base_url: str = "docs/runbooks",
                    down_for: str = "2m", min_free_ratio: float = 0.1) -> list[dict[str, Any]]:
    """Down / dropped telemetry / log ingestion errors / low disk, for the scraped ``jobs``."""
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
            "ShipwayTelemetryDropped", f'sum by (job, instance) (rate({DROPPED[:-1]},job="otelcol"}}[5m])) > 0',
            "5m", "ticket",
            "The collector is losing spans or log records",
            'The OpenTelemetry Collector failed to export or dropped {{ $value | printf "%.2f" }} records/s '
            "over 5m (exporter send/enqueue failures, processor drops or memory-limiter refusals)."))
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
