"""`shipway incident open|snapshot|close ENV [--model NAME]`: gather the evidence of an incident.

Example::

    shipway incident open prod --model iris-classifier --title "5xx after promotion"
    shipway incident snapshot prod          # as often as useful while it lasts
    shipway incident close prod --summary "rolled back to v3"

Each snapshot is a timestamped directory under ``.shipway/incidents/<env>/<id>/`` with a
Markdown summary; ``close`` records the incident and its timeline in the audit trail and writes
``review.md``, the post-incident review template with the facts filled in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from shipway import audit as audit_mod
from shipway import incident as incident_mod
from shipway import stackfile
from shipway.commands.alerts import read_alerts
from shipway.commands.common import (
    ACTOR_OPTION,
    AUDIT_LOG_OPTION,
    OUTPUT_OPTION,
    Output,
    check_env_option,
    check_model_name,
    cli_errors,
    fail,
    print_json,
    progress,
    services_from,
)
from shipway_core.config import SloSettings
from shipway_core.local import data_root
from shipway_core.outputs import OutputsError, PlatformOutputs

app = typer.Typer(no_args_is_help=True)

ENV_ARGUMENT = typer.Argument(..., help="Environment, e.g. prod.")
MODEL_OPTION = typer.Option(None, "--model", help="Narrow the evidence to one model.")
REVIEW_TEMPLATE = Path("docs/runbooks/post-incident-review.md")


def _now() -> datetime:
    return datetime.now(UTC)


def _sources(ctx: typer.Context, env: str, audit_log: Path | None) -> incident_mod.Sources:
    services = services_from(ctx, audit_path=audit_log)
    root = services.repo_root()
    outputs = PlatformOutputs.from_exports(services.engine.stack_outputs(env), stack=env)
    path = stackfile.stack_path(root, env)
    pins = stackfile.read_pins(path) if path.exists() else {}
    cfg = stackfile.load_config(path) if path.exists() else None
    recent = None
    if cfg is not None and cfg.cloud == "local":
        sink = data_root(cfg, root) / "alerts" / "alerts.jsonl"
        recent = lambda: read_alerts(sink)  # noqa: E731 - read at snapshot time, not now
    return incident_mod.Sources(outputs=outputs, audit=services.audit(), pins=pins,
                                slo=cfg.slo if cfg is not None else SloSettings(), recent_alerts=recent)


@app.command("open")
def open_(
    ctx: typer.Context,
    env: str = ENV_ARGUMENT,
    model: str | None = MODEL_OPTION,
    title: str = typer.Option("incident", "--title", help="What users see, in a few words."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Open an incident in ENV (one open incident per environment).

    Example: shipway incident open prod --model iris-classifier --title "5xx after promotion"
    """
    check_env_option(env, "ENV")
    if model is not None:
        check_model_name(model)
    root = services_from(ctx).repo_root()
    try:
        incident = incident_mod.open_incident(root, env, model=model, title=title, now=_now())
    except incident_mod.IncidentError as exc:
        raise fail(str(exc), None, output) from exc
    if output is Output.json:
        print_json({"ok": True, "incident": incident.id, "path": str(incident.path)})
    else:
        typer.echo(f"opened incident {incident.id} ({incident.path}); "
                   f"next: shipway incident snapshot {env}")


@app.command("snapshot")
def snapshot(
    ctx: typer.Context,
    env: str = ENV_ARGUMENT,
    model: str | None = MODEL_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Collect pins, audit records, alerts, SLO burn, drift, series, traces and logs into one directory.

    Opens an incident first when ENV has none (an on-call engineer's first command is this one).
    Example: shipway incident snapshot prod --model iris-classifier
    """
    check_env_option(env, "ENV")
    if model is not None:
        check_model_name(model)
    root = services_from(ctx).repo_root()
    with cli_errors(output), progress(output, f"collecting evidence from '{env}'"):
        try:
            incident = incident_mod.find_open(root, env) or incident_mod.open_incident(
                root, env, model=model, title="incident", now=_now())
            if model is not None and incident.model is None:
                incident.model = model
            dest = incident_mod.snapshot(incident, _sources(ctx, env, audit_log), now=_now())
        except (incident_mod.IncidentError, OutputsError) as exc:
            raise fail(str(exc), None, output) from exc
    manifest = (dest / "manifest.json").read_text()
    if output is Output.json:
        import json

        print_json({"ok": True, "incident": incident.id, "snapshot": str(dest), **json.loads(manifest)})
    else:
        typer.echo((dest / "summary.md").read_text())
        typer.echo(f"evidence in {dest}")


@app.command("close")
def close(
    ctx: typer.Context,
    env: str = ENV_ARGUMENT,
    summary: str = typer.Option("", "--summary", help="How it ended, e.g. 'rolled back to v3'."),
    actor: str | None = ACTOR_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Close ENV's open incident: audit record with its timeline, and review.md from the template.

    Example: shipway incident close prod --summary "rolled back to v3"
    """
    check_env_option(env, "ENV")
    services = services_from(ctx, audit_path=audit_log, actor=actor)
    root = services.repo_root()
    with cli_errors(output):
        try:
            incident = incident_mod.require_open(root, env)
            record = incident_mod.close_incident(
                incident, services.audit(), actor=audit_mod.resolve_actor(root, services.actor),
                summary=summary, commit=audit_mod.git_commit(root), now=_now(), template=root / REVIEW_TEMPLATE)
        except incident_mod.IncidentError as exc:
            raise fail(str(exc), None, output) from exc
    if output is Output.json:
        print_json({"ok": True, "incident": incident.id, "audit_seq": record["seq"],
                    "review": str(incident.path / "review.md")})
    else:
        typer.echo(f"closed incident {incident.id} (audit seq {record['seq']}); "
                   f"review draft: {incident.path / 'review.md'}")
