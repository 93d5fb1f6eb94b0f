"""`shipway audit [--env ENV] [--model NAME]` and `shipway audit verify`.

Reading the trail is one command; verifying it exits 1 and names the first bad record so a
tampered trail can fail a CI job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from shipway.audit import AuditLog
from shipway.commands.common import (
    AUDIT_LOG_OPTION,
    OUTPUT_OPTION,
    Output,
    add_row,
    check_env_option,
    cli_errors,
    err_console,
    print_json,
    services_from,
    table_console,
)

app = typer.Typer(invoke_without_command=True)


def _log(ctx: typer.Context, audit_log: Path | None) -> AuditLog:
    if audit_log is not None:
        return AuditLog(audit_log)
    return services_from(ctx).audit()


def _version_change(rec: dict[str, Any]) -> str:
    if rec.get("action") == "incident":
        return str((rec.get("details") or {}).get("incident") or "incident")
    if rec.get("action") in ("apply", "verify"):
        return f"v{rec.get('to_version')}"
    return f"v{rec.get('from_version')} -> v{rec.get('to_version')}"


def _render(records: list[dict[str, Any]]) -> None:
    table = Table(title="Shipway audit trail")
    for col in ("seq", "ts", "actor", "action", "env", "model", "versions", "outcome", "reason", "commit"):
        table.add_column(col)
    for r in records:
        add_row(
            table,
            str(r.get("seq")),
            str(r.get("ts")),
            str(r.get("actor")),
            str(r.get("action")),
            str(r.get("env")),
            str(r.get("model")),
            _version_change(r),
            str(r.get("outcome")),
            str(r.get("reason") or ""),
            str(r.get("commit") or "")[:12],
        )
    table_console().print(table)


@app.callback()
def show(
    ctx: typer.Context,
    env: str | None = typer.Option(None, "--env", help="Only records of this environment."),
    model: str | None = typer.Option(None, "--model", help="Only records of this model."),
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Show the audit trail: who promoted, rolled back, applied or verified what, when and why.

    Example:

        shipway audit --env prod --model iris-classifier --output json
    """
    if ctx.invoked_subcommand is not None:
        return
    if env is not None:
        check_env_option(env, "--env")
    with cli_errors(output):
        records = _log(ctx, audit_log).query(env=env, model=model)
    if output is Output.json:
        print_json({"records": records})
    else:
        _render(records)


@app.command("verify")
def verify(
    ctx: typer.Context,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Check the keyed hash chain and its git anchors; exit 1 naming the first bad seq if a record
    was edited (even with every hash recomputed), deleted, reordered, or the chain was truncated.

    Needs the audit key: SHIPWAY_AUDIT_KEY, or .shipway/audit/audit.key beside the log.

    Example:

        shipway audit verify --output json
    """
    log = _log(ctx, audit_log)
    result = log.verify()
    if output is Output.json:
        print_json({"path": str(log.path), **result.as_dict()})
    elif result.ok:
        typer.echo(f"audit trail {log.path}: {result.records} records, keyed hash chain and git anchors intact")
    if not result.ok:
        err_console().print(
            f"[bold red]tampered:[/] {escape(str(log.path))}: {escape(result.reason)} "
            f"(first bad seq {result.bad_seq})"
        )
        raise typer.Exit(code=1)
