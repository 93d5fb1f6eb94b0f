"""`shipway alerts`: the alerts Alertmanager delivered to the local stack's receiver.

On the `local` target Alertmanager routes every alert to a small webhook receiver the stack
runs (components/local/alert_sink.py), which records each notification as one JSON line in
``<dataDir>/<stack>/alerts/alerts.jsonl``. This command lists them, newest first.
Cloud targets route to Slack/PagerDuty/email instead (docs/operating.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from shipway.commands.common import OUTPUT_OPTION, Output, add_row, print_json, table_console

app = typer.Typer(invoke_without_command=True)

STATUSES = ("firing", "resolved")
FILE_OPTION = typer.Option(None, "--file", help="Read this alerts.jsonl instead of the stack's.")


def alerts_file(stack: str) -> Path:
    """Where the stack's alert receiver records alerts (the stack file says where its data lives)."""
    from shipway import engine
    from shipway.commands.platform import stack_config
    from shipway_core.local import data_root

    root = engine.repo_root()
    cfg = stack_config(root, stack)
    if cfg.cloud != "local":
        raise typer.BadParameter(f"stack '{stack}' targets {cfg.cloud}; its alerts go to the receivers in "
                                 "docs/operating.md, not to a local file", param_hint="--stack")
    return data_root(cfg, root) / "alerts" / "alerts.jsonl"


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """Every recorded notification, newest first; a damaged line is skipped (the sink appends)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return list(reversed(out))


def _render(records: list[dict[str, Any]]) -> None:
    table = Table("received", "status", "alert", "model", "feature", "severity", "summary")
    for r in records:
        labels = r.get("labels") or {}
        add_row(table, r.get("received_at", ""), r.get("status", ""), r.get("alertname", ""),
                labels.get("model", ""), labels.get("feature", ""), labels.get("severity", ""),
                (r.get("annotations") or {}).get("summary", ""))
    table_console().print(table)


@app.callback()
def list_alerts(
    stack: str = typer.Option("local", "--stack", help="Local stack whose alerts to list."),
    file: Path | None = FILE_OPTION,
    status: str | None = typer.Option(None, "--status", help="Only firing or only resolved notifications."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many (newest first)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """List alerts delivered to the local receiver, newest first.

    Example: shipway alerts --status firing -o json
    """
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"{status!r} is not a status; allowed: {', '.join(STATUSES)}",
                                 param_hint="--status")
    path = file if file is not None else alerts_file(stack)
    records = [r for r in read_alerts(path) if status is None or r.get("status") == status][:limit]
    if output is Output.json:
        print_json(records)
        return
    if not records:
        typer.echo(f"no alerts recorded in {path}")
        return
    _render(records)
