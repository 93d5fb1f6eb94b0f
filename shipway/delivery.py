"""Delivery and reliability figures (the four DORA keys) computed from the audit trail.

The audit trail records every promotion, ``up``, verification and rollback, so the figures a
platform lead reports need no other source:

* **deployment frequency**: promotions that changed a pin (``promote``/``pinned``) per day;
* **lead time**: from a version's registration to its deployment in the environment
  (registration times come from the registry; without them, from the version's first record
  in the trail, and the report says which basis it used);
* **change failure rate**: deployments followed, before the next one, by a failed ``up``, a
  failed verification or a rollback;
* **time to restore**: from that failure to the next passing verification of the model in the
  environment (what ``rollback`` -> ``up`` -> ``verify ok`` takes); incidents recorded by
  ``shipway incident close`` are reported beside it (count and median open -> close time).

Pure functions over records (dicts as :class:`shipway.audit.AuditLog` returns them), so they
are table-tested without a registry or an engine. ``python -m shipway.delivery`` serves them
to Prometheus (``/metrics``, computed from the trail at each scrape); the local stack runs it
and scrapes it as job ``shipway-delivery``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shipway_core.observability.delivery import DELIVERY_METRICS

RegisteredAt = Callable[[str, int], datetime | None]
"""(model, version) -> when the version was registered, None when unknown."""


def parse_ts(value: Any) -> datetime:
    """An audit timestamp (ISO 8601 with offset)."""
    ts = datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"ts: {value!r} has no UTC offset; audit timestamps carry one")
    return ts


@dataclass(frozen=True)
class Deployment:
    """One pin change in one environment and what followed it."""

    model: str
    env: str
    version: int | None
    at: datetime
    seq: int
    failed_at: datetime | None = None
    failure: str | None = None
    restored_at: datetime | None = None
    lead_time: timedelta | None = None


@dataclass
class DeliveryRow:
    """The figures for one model in one environment."""

    model: str
    env: str
    deployments: int = 0
    deployments_per_day: float = 0.0
    lead_time_hours_median: float | None = None
    lead_time_basis: str = "registry"
    change_failures: int = 0
    change_failure_rate: float | None = None
    time_to_restore_minutes_median: float | None = None
    unrestored_failures: int = 0
    incidents: int = 0
    incident_minutes_median: float | None = None
    versions: list[int] = field(default_factory=list)



def _failure_of(r: Mapping[str, Any]) -> str | None:
    """Why a record marks the deployment before it as failed, or None."""
    action, outcome = r.get("action"), r.get("outcome")
    if action == "apply" and outcome not in ("succeeded", "pinned"):
        return f"up {outcome}"
    if action == "verify" and outcome == "failed":
        return "verification failed"
    if action == "rollback" and outcome == "pinned":
        return "rolled back"
    return None


def deployments(records: Iterable[Mapping[str, Any]], registered_at: RegisteredAt | None = None
                ) -> tuple[list[Deployment], bool]:
    """Every promotion that changed a pin, with its failure and restore times.

    Returns the deployments and whether any lead time had to fall back to the trail's first
    record of the version (no registration time known).
    """
    ordered = sorted(records, key=lambda r: int(r.get("seq", 0)))
    first_seen: dict[tuple[str, int], datetime] = {}
    for r in ordered:
        for key in ("to_version", "from_version"):
            v = r.get(key)
            if isinstance(v, int) and r.get("model"):
                first_seen.setdefault((str(r["model"]), v), parse_ts(r["ts"]))
    out: list[Deployment] = []
    fallback = False
    for i, r in enumerate(ordered):
        if r.get("action") != "promote" or r.get("outcome") != "pinned":
            continue
        model, env, version = str(r["model"]), str(r["env"]), r.get("to_version")
        at = parse_ts(r["ts"])
        later = [x for x in ordered[i + 1:] if x.get("model") == model and x.get("env") == env]
        failed_at = failure = restored_at = None
        for x in later:
            if x.get("action") == "promote" and x.get("outcome") == "pinned":
                break  # the next deployment owns what follows
            why = _failure_of(x)
            if why is not None and failed_at is None:
                failed_at, failure = parse_ts(x["ts"]), why
            elif failed_at is not None and x.get("action") == "verify" and x.get("outcome") == "ok":
                restored_at = parse_ts(x["ts"])
                break
        registered = registered_at(model, version) if registered_at and isinstance(version, int) else None
        if registered is None and isinstance(version, int):
            registered, fallback = first_seen.get((model, version)), True
        lead = at - registered if registered is not None and at >= registered else None
        out.append(Deployment(model, env, version if isinstance(version, int) else None, at, int(r["seq"]),
                              failed_at, failure, restored_at, lead))
    return out, fallback


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def delivery_report(records: Iterable[Mapping[str, Any]], *, now: datetime, since: datetime | None = None,
                    env: str | None = None, registered_at: RegisteredAt | None = None) -> list[DeliveryRow]:
    """One row per (model, env) with deployments in the window ``[since, now]``."""
    deps, fallback = deployments(records, registered_at)
    window_start = since or min((d.at for d in deps), default=now)
    days = max((now - window_start).total_seconds() / 86400.0, 1.0)
    rows: dict[tuple[str, str], DeliveryRow] = {}
    groups: dict[tuple[str, str], list[Deployment]] = {}
    for d in deps:
        if (env is not None and d.env != env) or d.at < window_start or d.at > now:
            continue
        groups.setdefault((d.model, d.env), []).append(d)
    incidents = _incidents(records, window_start, now, env)
    for key in incidents:
        groups.setdefault(key, [])
    for (model, e), items in sorted(groups.items()):
        failures = [d for d in items if d.failed_at is not None]
        restores = [(d.restored_at - d.failed_at).total_seconds() / 60.0 for d in failures
                    if d.restored_at is not None and d.failed_at is not None]
        leads = [d.lead_time.total_seconds() / 3600.0 for d in items if d.lead_time is not None]
        durations = incidents.get((model, e), [])
        rows[(model, e)] = DeliveryRow(
            model=model, env=e, deployments=len(items), deployments_per_day=round(len(items) / days, 4),
            lead_time_hours_median=_median(leads), lead_time_basis="first_audit_record" if fallback else "registry",
            change_failures=len(failures),
            change_failure_rate=round(len(failures) / len(items), 4) if items else None,
            time_to_restore_minutes_median=_median(restores), unrestored_failures=len(failures) - len(restores),
            incidents=len(durations), incident_minutes_median=_median(durations),
            versions=[d.version for d in items if d.version is not None])
    return list(rows.values())


def _incidents(records: Iterable[Mapping[str, Any]], start: datetime, now: datetime,
               env: str | None) -> dict[tuple[str, str], list[float]]:
    """Closed incidents per (model, env) in the window: their open -> close minutes."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in records:
        details = r.get("details") or {}
        if r.get("action") != "incident" or (env is not None and r.get("env") != env):
            continue
        if not start <= parse_ts(r["ts"]) <= now or not isinstance(details.get("duration_minutes"), int | float):
            continue
        out.setdefault((str(r.get("model")), str(r.get("env"))), []).append(float(details["duration_minutes"]))
    return out


def as_json(rows: Iterable[DeliveryRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(rows: Iterable[DeliveryRow]) -> str:
    """Prometheus exposition text (for a textfile collector or a push), one series per model/env.

    Figures that do not exist (no failure, so no time to restore) are left out rather than
    written as 0, which a dashboard would read as "restored instantly".
    """
    materialised = list(rows)
    lines: list[str] = []
    for metric in DELIVERY_METRICS:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} gauge"]
        for r in materialised:
            value = getattr(r, metric.field)
            if value is not None:
                lines.append(f'{metric.name}{{model="{_label(r.model)}",env="{_label(r.env)}"}} {float(value):g}')
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the exporter


def metrics_for(audit_path: Path, now: datetime | None = None) -> str:
    """Exposition text for every model and environment in the trail at ``audit_path``, all time.

    Read at scrape time, so a promotion or rollback shows on the next scrape; a missing trail
    (nothing promoted yet) is an empty exposition, not an error.
    """
    from shipway.audit import AuditLog

    records = AuditLog(audit_path).records() if audit_path.exists() else []
    return prometheus_text(delivery_report(records, now=now or datetime.now(UTC)))


def make_handler(audit_path: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/health":
                self._reply(200, b'{"status": "ok"}', "application/json")
            elif self.path == "/metrics":
                try:
                    text = metrics_for(audit_path)
                except (OSError, ValueError) as exc:  # a torn or unreadable trail: say so, scrape fails
                    self._reply(500, f"audit trail {audit_path}: {exc}\n".encode(), "text/plain")
                    return
                self._reply(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._reply(404, f"no route {self.path}; GET /metrics, GET /health\n".encode(), "text/plain")

        def log_message(self, *_args: Any) -> None:
            pass  # a scrape every few seconds is not worth a log line

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shipway.delivery --port P --audit-log PATH``: serve the figures at /metrics."""
    parser = argparse.ArgumentParser(description="Serve the audit trail's delivery figures to Prometheus.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audit-log", type=Path, required=True, help="The trail (.shipway/audit/audit.jsonl).")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="The stack's exporter directory (names this process for its supervisor).")
    ns = parser.parse_args(argv)
    if ns.host != "127.0.0.1":
        parser.error(f"--host: {ns.host!r} is not allowed; the delivery exporter binds 127.0.0.1 only")
    ThreadingHTTPServer((ns.host, ns.port), make_handler(ns.audit_log)).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
