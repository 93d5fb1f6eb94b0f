"""`shipway report delivery [--env ENV] [--since DATE]`: delivery and reliability figures.

Example::

    shipway report delivery --env prod --since 2026-01-01 --output json
    shipway report delivery --output prometheus > .shipway/metrics/delivery.prom
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from shipway.commands.common import (
    AUDIT_LOG_OPTION,
    TRACKING_URI_OPTION,
    add_row,
    check_env_option,
    cli_errors,
    print_json,
    services_from,
    table_console,
)
from shipway.commands.common import Output as BaseOutput
from shipway.delivery import RegisteredAt, as_json, delivery_report, prometheus_text

app = typer.Typer(no_args_is_help=True)


class ReportOutput(StrEnum):
    """Tables for people, JSON for scripts, Prometheus exposition text for a dashboard."""

    table = "table"
    json = "json"
    prometheus = "prometheus"


REPORT_OUTPUT_OPTION = typer.Option(ReportOutput.table, "--output", "-o",
                                    help="table, json or prometheus (exposition text).")


def parse_since(value: str | None) -> datetime | None:
    """``--since`` as a date or an ISO timestamp (UTC when no offset is given)."""
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD or an ISO 8601 timestamp",
                                 param_hint="--since") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def registry_times(tracking_uri: str) -> RegisteredAt:
    """Registration time of a version from the registry (None when it cannot be read)."""
    from shipway.registry import Registry

    client = Registry(tracking_uri).client

    def registered_at(model: str, version: int) -> datetime | None:
        try:
            ms = client.get_model_version(model, str(version)).creation_timestamp
        except Exception:  # noqa: BLE001 - a deleted version just has no known registration time
            return None
        return datetime.fromtimestamp(int(ms) / 1000.0, tz=UTC) if ms else None

    return registered_at


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command("delivery")
def delivery(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Only this environment (default: all)."),
    since: str | None = typer.Option(None, "--since", help="Window start, e.g. 2026-01-01 (default: first deploy)."),
    tracking_uri: str | None = TRACKING_URI_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: ReportOutput = REPORT_OUTPUT_OPTION,
) -> None:
    """Deployment frequency, lead time, change failure rate and time to restore, per model and env.

    Example: shipway report delivery --env prod --since 2026-01-01 --output json
    """
    if env is not None:
        check_env_option(env, "--env")
    start = parse_since(since)
    with cli_errors(BaseOutput.json if output is ReportOutput.json else BaseOutput.table):
        log = services_from(ctx, audit_path=audit_log).audit()
        times = registry_times(tracking_uri) if tracking_uri else None
        rows = delivery_report(log.records(), now=datetime.now(UTC), since=start, env=env, registered_at=times)
    if output is ReportOutput.json:
        print_json({"since": start.isoformat() if start else None, "env": env, "rows": as_json(rows)})
        return
    if output is ReportOutput.prometheus:
        typer.echo(prometheus_text(rows), nl=False)
        return
    table = Table(title="Shipway delivery report")
    for col in ("model", "env", "deploys", "per day", "lead time h (median)", "change failure rate",
                "time to restore min (median)", "unrestored", "incidents (median min)"):
        table.add_column(col)
    for r in rows:
        add_row(table, r.model, r.env, r.deployments, f"{r.deployments_per_day:.3f}",
                f"{_hours(r.lead_time_hours_median)} ({r.lead_time_basis})",
                "-" if r.change_failure_rate is None else f"{r.change_failure_rate:.0%}",
                _hours(r.time_to_restore_minutes_median), r.unrestored_failures,
                f"{r.incidents} ({_hours(r.incident_minutes_median)})")
    table_console().print(table)
