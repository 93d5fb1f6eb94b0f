"""Incident evidence: open an incident, snapshot what the environment looks like, close it.

An incident lives in ``.shipway/incidents/<env>/<id>/`` (``incident.json`` holds its state and
timeline). ``snapshot`` writes one timestamped directory of evidence gathered at that moment,
from what the environment exports (:class:`shipway_core.outputs.PlatformOutputs`):

=================  =========================================================================
pins.json          stack-file pins, the versions the stack deployed, what each endpoint serves
audit.json         recent audit records of the environment (and model)
alerts.json        alerts firing in Alertmanager and Prometheus
slo.json           error ratio and burn rate (5m, 1h) and p99 latency per model
drift.json         per version: live rows and each feature's effect sizes, with the stack's thresholds
series.json        error ratio and p99 latency over the last hour (one point a minute)
traces.json        recent traces of the serving service (Jaeger), errors first
logs/              tails of each endpoint's log files and request log, and its error lines
summary.md         what a reader needs first; seeds the post-incident review
manifest.json      what was collected and what could not be (with the reason)
=================  =========================================================================

Incidents happen when things are broken, so a source that is down never stops a snapshot: its
failure is written to ``manifest.json`` and the summary, and the rest is still collected.
``close`` records the incident (with its timeline) in the audit trail and writes ``review.md``,
the post-incident review template with the facts filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shipway.audit import AuditLog
from shipway_core.config import SloSettings
from shipway_core.observability import drift as drift_decision
from shipway_core.observability.rules import error_ratio_record, latency_record
from shipway_core.observability.slo import slos
from shipway_core.outputs import PlatformOutputs

INCIDENTS_DIR = Path(".shipway/incidents")
TRACE_SERVICE = "shipway-serving"
HTTP_TIMEOUT = 3.0
LOG_TAIL_LINES = 500
REQUEST_TAIL_LINES = 50
AUDIT_RECORDS = 50
RECENT_ALERTS = 50
_SLUG = re.compile(r"[^a-z0-9]+")


class IncidentError(RuntimeError):
    """No such incident, one already open, or an incident in the wrong state for the command."""


def stamp(ts: datetime) -> str:
    """Directory-safe UTC timestamp, sortable: 20260302T090000Z."""
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class Incident:
    """One incident's state, as stored in ``incident.json``."""

    id: str
    env: str
    model: str | None
    title: str
    opened_at: str
    state: str = "open"
    closed_at: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    path: Path = Path()

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "path"}
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "incident.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Incident:
        data = json.loads((path / "incident.json").read_text())
        return cls(**data, path=path)

    def event(self, ts: str, what: str, source: str) -> None:
        self.timeline.append({"ts": ts, "event": what, "source": source})
        self.timeline.sort(key=lambda e: e["ts"])


def incidents_root(root: Path, env: str) -> Path:
    return root / INCIDENTS_DIR / env


def find_open(root: Path, env: str) -> Incident | None:
    """The environment's open incident (at most one is open at a time)."""
    base = incidents_root(root, env)
    for path in sorted(base.glob("*/incident.json"), reverse=True) if base.exists() else []:
        incident = Incident.load(path.parent)
        if incident.state == "open":
            return incident
    return None


def open_incident(root: Path, env: str, *, model: str | None, title: str, now: datetime) -> Incident:
    """Start an incident; IncidentError when the environment already has an open one."""
    current = find_open(root, env)
    if current is not None:
        raise IncidentError(f"incident {current.id} is already open in '{env}' (opened {current.opened_at}); "
                            f"snapshot it with `shipway incident snapshot {env}` or close it first")
    slug = _SLUG.sub("-", title.lower()).strip("-")[:40] or "incident"
    ident = f"{stamp(now)}-{slug}"
    incident = Incident(id=ident, env=env, model=model, title=title, opened_at=iso(now),
                        path=incidents_root(root, env) / ident)
    incident.event(iso(now), f"incident opened: {title}", "shipway incident open")
    incident.save()
    return incident


def require_open(root: Path, env: str) -> Incident:
    incident = find_open(root, env)
    if incident is None:
        raise IncidentError(f"no open incident in '{env}'; start one with `shipway incident open {env}`")
    return incident


# ----------------------------------------------------------------------------- sources


Getter = Callable[[str, Mapping[str, Any]], Any]


def http_json(url: str, params: Mapping[str, Any]) -> Any:
    """GET a JSON document with a short timeout: a down source must not stall the snapshot."""
    response = httpx.get(url, params=dict(params), timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()


@dataclass
class Sources:
    """Where a snapshot reads from; ``get`` is replaceable so tests can point it at local servers."""

    outputs: PlatformOutputs
    audit: AuditLog
    pins: Mapping[str, int]
    slo: SloSettings = field(default_factory=SloSettings)
    get: Getter = http_json
    # Notifications the environment's receiver got (firing and resolved, newest first); on the
    # local target the alert sink's file (shipway.commands.alerts.read_alerts), else None.
    recent_alerts: Callable[[], list[dict[str, Any]]] | None = None


def _prom(sources: Sources, query: str) -> list[dict[str, Any]]:
    url = sources.outputs.observability.metrics_url
    if not url:
        raise IncidentError("the stack exports no observability.metricsUrl")
    doc = sources.get(url.rstrip("/") + "/api/v1/query", {"query": query})
    return list(doc.get("data", {}).get("result", []))


def _prom_range(sources: Sources, query: str, now: datetime) -> list[dict[str, Any]]:
    url = sources.outputs.observability.metrics_url
    if not url:
        raise IncidentError("the stack exports no observability.metricsUrl")
    params = {"query": query, "start": (now - timedelta(hours=1)).timestamp(), "end": now.timestamp(), "step": 60}
    return list(sources.get(url.rstrip("/") + "/api/v1/query_range", params).get("data", {}).get("result", []))


def _by_model(result: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in result:
        value = _value(item)
        if value is not None:
            out[str(item.get("metric", {}).get("model", "?"))] = value
    return out


def _models(sources: Sources, model: str | None) -> list[str]:
    return [model] if model else sorted(sources.outputs.endpoints)


def collect_pins(sources: Sources, model: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _models(sources, model):
        endpoint = sources.outputs.endpoints.get(name)
        entry: dict[str, Any] = {"pinned": sources.pins.get(name),
                                 "deployed": endpoint.version if endpoint else None}
        if endpoint is not None and endpoint.status.startswith("http"):
            try:
                entry["serving"] = sources.get(endpoint.status.rstrip("/") + "/version", {})
            except Exception as exc:  # noqa: BLE001 - an endpoint that does not answer is evidence too
                entry["serving"] = {"error": f"{type(exc).__name__}: {exc}"}
        out[name] = entry
    return out


def collect_audit(sources: Sources, env: str, model: str | None) -> list[dict[str, Any]]:
    return sources.audit.query(env=env, model=model)[-AUDIT_RECORDS:]


def collect_alerts(sources: Sources, model: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    obs = sources.outputs.observability
    if obs.alerts_url:
        alerts = sources.get(obs.alerts_url.rstrip("/") + "/api/v2/alerts", {"active": "true"})
        out["alertmanager"] = [a for a in alerts if not model or a.get("labels", {}).get("model") in (None, model)]
    if obs.metrics_url:
        doc = sources.get(obs.metrics_url.rstrip("/") + "/api/v1/alerts", {})
        out["prometheus"] = [a for a in doc.get("data", {}).get("alerts", [])
                             if not model or a.get("labels", {}).get("model") in (None, model)]
    if sources.recent_alerts is not None:
        out["received"] = [a for a in sources.recent_alerts()
                           if not model or (a.get("labels") or {}).get("model") in (None, model)][:RECENT_ALERTS]
    return out


def collect_slo(sources: Sources, model: str | None) -> dict[str, Any]:
    """Per model and SLO (availability, latency): the recorded bad ratio and burn rate (ratio /
    error budget) over 5m and 1h, and the recorded p99; the same series the burn alerts read."""
    models: dict[str, dict[str, Any]] = {m: {} for m in _models(sources, model)}
    objectives = {}
    for slo in slos(sources.slo):
        objectives[slo.name] = slo.objective
        for window in ("5m", "1h"):
            for name, ratio in _by_model(_prom(sources, slo.record(window))).items():
                if name in models:
                    entry = models[name].setdefault(slo.name, {})
                    entry[f"ratio_{window}"] = ratio
                    entry[f"burn_{window}"] = round(ratio / slo.budget, 3)
    for name, seconds in _by_model(_prom(sources, latency_record("p99"))).items():
        if name in models:
            models[name]["latency_p99_ms"] = round(seconds * 1000, 3)
    return {"objectives": objectives, "latency_threshold_ms": sources.slo.latency_p99_ms, "models": models}


def collect_drift(sources: Sources, model: str | None) -> dict[str, Any]:
    """Per model and serving version: live rows in the drift window and each feature's effect sizes,
    with the stack's thresholds: the measures ShipwayFeatureDrift decides on (PSI is not one)."""
    models: dict[str, dict[str, dict[str, Any]]] = {}

    def entry(labels: Mapping[str, Any]) -> dict[str, Any] | None:
        name = str(labels.get("model", "?"))
        if model and name != model:
            return None
        return models.setdefault(name, {}).setdefault(str(labels.get("version", "?")),
                                                      {"samples": None, "features": {}})

    for item in _prom(sources, "shipway_feature_drift_effect"):
        labels = item.get("metric", {})
        found = entry(labels)
        value = _value(item)
        if found is not None and value is not None:
            found["features"].setdefault(str(labels.get("feature", "?")), {})[str(labels.get("statistic", "?"))] = value
    for item in _prom(sources, "shipway_drift_samples"):
        found = entry(item.get("metric", {}))
        if found is not None:
            found["samples"] = _value(item)
    return {"thresholds": drift_decision.effect_thresholds(sources.slo), "min_samples": drift_decision.MIN_SAMPLES,
            "models": models}


def _value(item: Mapping[str, Any]) -> float | None:
    try:
        return float(item["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def drifted(drift: Mapping[str, Any]) -> list[str]:
    """``model vN: feature statistic value > threshold`` for every effect over its threshold where the
    window holds enough rows (the alert's condition), then what the sample guard keeps quiet."""
    thresholds, guard = drift.get("thresholds", {}), drift.get("min_samples", drift_decision.MIN_SAMPLES)
    lines, quiet = [], []
    for name, versions in sorted(drift.get("models", {}).items()):
        for version, entry in sorted(versions.items()):
            over = [f"- {name} v{version}: {feature} {statistic} {value:.3f} > {thresholds[statistic]:g}"
                    for feature, stats in sorted(entry.get("features", {}).items())
                    for statistic, value in sorted(stats.items())
                    if statistic in thresholds and value > thresholds[statistic]]
            samples = entry.get("samples")
            if over and (samples is None or samples < guard):
                quiet.append(f"- {name} v{version}: {len(over)} effect(s) over threshold on "
                             f"{'no' if samples is None else f'{samples:g}'} live rows (< {guard}): too few to "
                             "judge, no alert")
            else:
                lines += over
    return lines + quiet


def collect_series(sources: Sources, model: str | None, now: datetime) -> dict[str, Any]:
    selector = f'{{model="{model}"}}' if model else ""
    return {"error_ratio_5m": _prom_range(sources, error_ratio_record("5m") + selector, now),
            "latency_p99_seconds": _prom_range(sources, latency_record("p99") + selector, now)}


def collect_traces(sources: Sources, model: str | None) -> dict[str, Any]:
    url = sources.outputs.observability.traces_url
    if not url:
        raise IncidentError("the stack exports no observability.tracesUrl")
    params: dict[str, Any] = {"service": TRACE_SERVICE, "limit": 20, "lookback": "1h"}
    if model:
        params["tags"] = json.dumps({"shipway.model.name": model})
    errors = sources.get(url.rstrip("/") + "/api/traces", {**params, "tags": json.dumps(
        {**({"shipway.model.name": model} if model else {}), "error": "true"})}).get("data", [])
    recent = sources.get(url.rstrip("/") + "/api/traces", params).get("data", [])
    return {"errors": errors, "recent": recent}


def _tail(path: Path, lines: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - lines * 2048))
        data = fh.read().decode("utf-8", errors="replace").splitlines()
    return data[-lines:]


def collect_logs(sources: Sources, model: str | None, dest: Path) -> dict[str, Any]:
    """Tails of each endpoint's log files (beside its request log) and its error lines."""
    out: dict[str, Any] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for name in _models(sources, model):
        endpoint = sources.outputs.endpoints.get(name)
        if endpoint is None or not endpoint.request_log:
            out[name] = "no local log files (the target's logs live in its cloud log service)"
            continue
        folder = Path(endpoint.request_log).parent
        written: list[str] = []
        errors: list[str] = []
        for log in sorted(folder.glob("*.log")):
            tail = _tail(log, LOG_TAIL_LINES)
            (dest / f"{name}-{log.name}").write_text("\n".join(tail) + ("\n" if tail else ""))
            written.append(f"{name}-{log.name}")
            errors += [line for line in tail if '"level": "error"' in line or '"level":"error"' in line
                       or '"level":"warning"' in line or '"level": "warning"' in line]
        (dest / f"{name}-errors.jsonl").write_text("\n".join(errors) + ("\n" if errors else ""))
        requests = _tail(Path(endpoint.request_log), REQUEST_TAIL_LINES)
        (dest / f"{name}-requests.jsonl").write_text("\n".join(requests) + ("\n" if requests else ""))
        out[name] = {"files": [*written, f"{name}-errors.jsonl", f"{name}-requests.jsonl"],
                     "error_lines": len(errors), "requests": len(requests)}
    return out


# ----------------------------------------------------------------------------- snapshot


def snapshot(incident: Incident, sources: Sources, *, now: datetime) -> Path:
    """Collect every source into ``<incident>/snapshot-<ts>/``; returns that directory."""
    if incident.state != "open":
        raise IncidentError(f"incident {incident.id} is closed; open a new one")
    dest = incident.path / f"snapshot-{stamp(now)}"
    dest.mkdir(parents=True, exist_ok=False)
    model, env = incident.model, incident.env
    steps: dict[str, Callable[[], Any]] = {
        "pins.json": lambda: collect_pins(sources, model),
        "audit.json": lambda: collect_audit(sources, env, model),
        "alerts.json": lambda: collect_alerts(sources, model),
        "slo.json": lambda: collect_slo(sources, model),
        "drift.json": lambda: collect_drift(sources, model),
        "series.json": lambda: collect_series(sources, model, now),
        "traces.json": lambda: collect_traces(sources, model),
        "logs": lambda: collect_logs(sources, model, dest / "logs"),
    }
    collected: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, step in steps.items():
        try:
            collected[name] = step()
        except Exception as exc:  # noqa: BLE001 - one source down must not lose the others' evidence
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            continue
        if name.endswith(".json"):
            (dest / name).write_text(json.dumps(collected[name], indent=2, sort_keys=True, default=str) + "\n")
    manifest = {"incident": incident.id, "env": env, "model": model, "taken_at": iso(now),
                "collected": sorted(collected), "errors": errors}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (dest / "summary.md").write_text(summary_markdown(incident, collected, errors, now))
    _alert_events(incident, collected.get("alerts.json", {}))
    incident.event(iso(now), f"snapshot {dest.name} ({len(collected)} sources, {len(errors)} unavailable)",
                   "shipway incident snapshot")
    incident.snapshots.append(dest.name)
    incident.save()
    return dest


def _alert_events(incident: Incident, alerts: Mapping[str, Any]) -> None:
    """Firing alerts become timeline events at the time they started (once each)."""
    seen = {(e["ts"], e["event"]) for e in incident.timeline}
    for alert in alerts.get("alertmanager", []):
        labels = alert.get("labels", {})
        started = alert.get("startsAt")
        what = f"alert {labels.get('alertname', '?')} firing ({labels.get('severity', '?')})"
        if started and (started, what) not in seen:
            incident.event(str(started), what, "Alertmanager")
    for note in alerts.get("received", []):
        if note.get("status") != "resolved":
            continue
        labels = note.get("labels") or {}
        when = note.get("ends_at") or note.get("received_at")
        what = f"alert {note.get('alertname') or labels.get('alertname', '?')} resolved"
        if when and (str(when), what) not in seen:
            incident.event(str(when), what, "alert receiver")


def _versions(record: Mapping[str, Any]) -> str:
    """"v2 -> v3" for a change, "v3" for an apply or a verification of one version."""
    frm, to = record.get("from_version"), record.get("to_version")
    return f"v{to}" if frm is None else f"v{frm} -> v{to}"


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def summary_markdown(incident: Incident, collected: Mapping[str, Any], errors: Mapping[str, str],
                     now: datetime) -> str:
    """The snapshot's one-page summary (Markdown), facts first."""
    lines = [f"# Incident {incident.id}: snapshot {iso(now)}", "",
             f"- **Environment:** {incident.env}" + (f", model `{incident.model}`" if incident.model else ""),
             f"- **Opened:** {incident.opened_at}", f"- **Title:** {incident.title}", ""]
    lines += ["## Versions", "", "| model | pinned | deployed | serving |", "| --- | --- | --- | --- |"]
    for name, pin in collected.get("pins.json", {}).items():
        serving = pin.get("serving", {})
        served = serving.get("model_version", serving.get("error", "-")) if isinstance(serving, dict) else "-"
        lines.append(f"| {name} | {_fmt(pin.get('pinned'))} | {_fmt(pin.get('deployed'))} | {served} |")
    alerts = collected.get("alerts.json", {})
    lines += ["", "## Alerts firing", ""]
    firing = [a.get("labels", {}) for a in alerts.get("alertmanager", [])]
    lines += [f"- {a.get('alertname', '?')} ({a.get('severity', '?')}) model={a.get('model', '-')}"
              for a in firing] or ["- none"]
    received = alerts.get("received", [])
    if received:
        lines += ["", f"Recent notifications: {len(received)} (firing and resolved, in alerts.json)"]
    lines += ["", "## SLO burn (bad ratio / error budget; 1 = spending exactly the budget)", "",
              "| model | availability 5m | availability 1h | latency 5m | latency 1h | p99 ms |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, slo in collected.get("slo.json", {}).get("models", {}).items():
        avail, slow = slo.get("availability", {}), slo.get("latency", {})
        lines.append(f"| {name} | {_fmt(avail.get('burn_5m'))} | {_fmt(avail.get('burn_1h'))} | "
                     f"{_fmt(slow.get('burn_5m'))} | {_fmt(slow.get('burn_1h'))} | {_fmt(slo.get('latency_p99_ms'))} |")
    lines.append("")
    lines.append("(`-`: no recorded series yet: no traffic in the window, or the rules have not run since the up)")
    lines += ["", "## Drift (effect size above the stack's threshold, as ShipwayFeatureDrift decides)", ""]
    lines += drifted(collected.get("drift.json", {})) or ["- none"]
    lines += ["", "## Recent changes (audit)", ""]
    recent = collected.get("audit.json", [])[-10:]
    lines += [f"- {r.get('ts')} {r.get('action')} {r.get('model')} {_versions(r)}: {r.get('outcome')}"
              for r in recent] or ["- none"]
    logs = collected.get("logs", {})
    lines += ["", "## Logs and traces", ""]
    lines += [f"- {m}: {v['error_lines']} warning/error lines, {v['requests']} recent requests (logs/)"
              if isinstance(v, dict) else f"- {m}: {v}" for m, v in logs.items()]
    traces = collected.get("traces.json", {})
    if traces:
        lines.append(f"- traces: {len(traces.get('errors', []))} with errors, {len(traces.get('recent', []))} recent")
    lines += ["", "## Not collected", ""]
    lines += [f"- {name}: {why}" for name, why in errors.items()] or ["- everything was collected"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- close


def close_incident(incident: Incident, audit: AuditLog, *, actor: str, summary: str, commit: str | None,
                   now: datetime, template: Path | None = None) -> dict[str, Any]:
    """Close, record in the audit trail (with the timeline) and write ``review.md``."""
    if incident.state != "open":
        raise IncidentError(f"incident {incident.id} is already closed")
    incident.event(iso(now), f"incident closed: {summary}" if summary else "incident closed",
                   "shipway incident close")
    incident.state, incident.closed_at = "closed", iso(now)
    opened = datetime.fromisoformat(incident.opened_at)
    duration = round((now - opened).total_seconds() / 60.0, 1)
    try:
        record = audit.append(actor=actor, action="incident", env=incident.env, model=incident.model or "*",
                              outcome="closed", reason=summary or incident.title, commit=commit,
                              details={"incident": incident.id, "title": incident.title,
                                       "opened_at": incident.opened_at, "closed_at": incident.closed_at,
                                       "duration_minutes": duration, "timeline": incident.timeline,
                                       "snapshots": incident.snapshots})
    except ValueError as exc:
        raise IncidentError(f"the audit trail does not accept incident records yet ({exc}); "
                            "the incident stays open") from exc
    incident.save()
    (incident.path / "review.md").write_text(review_markdown(incident, duration, record["seq"], template))
    return record


def review_markdown(incident: Incident, duration: float, seq: int, template: Path | None) -> str:
    """The post-incident review template with what the snapshots know filled in."""
    rows = "\n".join(f"| {e['ts']} | {e['event']} | {e['source']} |" for e in incident.timeline)
    facts = (f"# Post-incident review: {incident.title}\n\n"
             f"- **Incident:** {incident.id} in `{incident.env}`"
             + (f", model `{incident.model}`" if incident.model else "") + "\n"
             f"- **Duration:** {incident.opened_at} -> {incident.closed_at} ({duration} min)\n"
             f"- **Audit record:** seq {seq} (`shipway audit --env {incident.env}`)\n"
             f"- **Evidence:** " + ", ".join(f"`{s}/`" for s in incident.snapshots) + "\n\n"
             "## Timeline (UTC, from the incident record)\n| time | event | source |\n| --- | --- | --- |\n"
             + rows + "\n")
    body = template.read_text() if template is not None and template.exists() else ""
    # Keep the template's sections after its own summary/timeline: the reviewers fill those in.
    rest = body.split("## Impact", 1)
    return facts + ("\n## Impact" + rest[1] if len(rest) == 2 else "")
