"""`shipway logs MODEL`: search an environment's log store for a model's log lines.

The store is VictoriaLogs (local: started by the stack, 127.0.0.1:<local.logStorePort>); its
query API answers LogsQL with one JSON object per line. The query is built by the same helper
the alert annotations use (shipway_core/observability/links.py), so the lines this prints are
the lines an alert's ``logs_url`` opens.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import typer
from rich.table import Table

from shipway.commands.common import (
    OUTPUT_OPTION,
    Output,
    add_row,
    err_console,
    print_json,
    services_from,
    table_console,
)
from shipway_core.config import ENVIRONMENTS
from shipway_core.observability.links import LOG_QUERY_PATH, check_window, logsql
from shipway_core.outputs import OutputsError, PlatformOutputs

app = typer.Typer()
SINGLE_COMMAND = True  # `shipway logs MODEL`, not `shipway logs <verb>` (shipway/cli.py)

COLUMNS = ("_time", "level", "service.name", "model", "version", "trace_id", "_msg")
TIMEOUT_S = 10.0


class LogStoreError(RuntimeError):
    """The log store could not answer (unreachable, or refused the query)."""


def query_url(services: Any, env: str) -> str:
    """The env's log query API, from its stack outputs (local: the stack file's port when older
    outputs lack it). Raises typer.BadParameter / LogStoreError with what to run."""
    from shipway import stackfile

    cfg = stackfile.load_config(stackfile.stack_path(services.repo_root(), env))
    try:
        exports = dict(services.engine.stack_outputs(env) or {})
        outputs = PlatformOutputs.from_exports(exports, stack=env) if exports else None
    except OutputsError:
        outputs = None
    except Exception:
        outputs = None
    if outputs is not None and outputs.observability.log_query_url:
        return str(outputs.observability.log_query_url)
    if outputs is not None and outputs.observability.log_store_url:
        return str(outputs.observability.log_store_url).rstrip("/") + LOG_QUERY_PATH
    if cfg.cloud == "local":
        return f"http://127.0.0.1:{cfg.local.log_store_port}{LOG_QUERY_PATH}"
    raise LogStoreError(f"stack '{env}' ({cfg.cloud}) exports no observability.logQueryUrl: deploy it with this "
                        "version of Shipway (`shipway platform up`), or pass --url")


def check_stack(services: Any, env: str) -> None:
    """An env/stack name with a stack file (the file says where its store is)."""
    from shipway import stackfile

    path = stackfile.stack_path(services.repo_root(), env)
    if not path.exists():
        raise typer.BadParameter(f"{env!r} has no stack file ({path}); use local, "
                                 f"{', '.join(ENVIRONMENTS)} or a stack under stacks/", param_hint="--env")


def known_models(services: Any, env: str) -> list[str]:
    from shipway import stackfile

    try:
        return sorted(stackfile.load_config(stackfile.stack_path(services.repo_root(), env)).models)
    except stackfile.StackFileError:
        return []


def search(url: str, query: str, limit: int) -> list[dict[str, Any]]:
    """Run LogsQL against a VictoriaLogs query API; records oldest first."""
    if not url.startswith(("http://", "https://")):
        raise LogStoreError(f"log store URL {url!r} is not http(s); pass --url http://host:port{LOG_QUERY_PATH}")
    body = urllib.parse.urlencode({"query": query, "limit": str(limit)}).encode()
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - http(s) checked above
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) checked above
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()[:300]
        raise LogStoreError(f"the log store at {url} refused the query {query!r} (HTTP {exc.code}): {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LogStoreError(f"the log store at {url} is unreachable ({reason}); start the stack with "
                            "`shipway platform up` (local) or check `shipway env status`") from exc
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise LogStoreError(f"the log store at {url} answered a line that is not JSON: {line[:120]!r}") from exc
        if isinstance(record, dict):
            records.append(record)
    return sorted(records, key=lambda r: str(r.get("_time", "")))


def _render(records: list[dict[str, Any]], query: str) -> None:
    table = Table(*("time", "level", "service", "model", "version", "trace", "message"), title=f"logs: {query}")
    for r in records:
        add_row(table, *(r.get(c, "") for c in COLUMNS))
    table_console().print(table)
    if not records:
        err_console().print(f"no log lines match {query!r}")


@app.command()
def logs(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model whose log lines to show (a model pinned in the env)."),
    env: str = typer.Option("local", "--env", help="Environment (stack) whose log store to search: local, dev, "
                                                 "test, prod or any stack with a stacks/Pulumi.<name>.yaml."),
    since: str = typer.Option("15m", "--since", help="How far back: a number and m, h or d (15m, 2h, 1d)."),
    trace: str | None = typer.Option(None, "--trace", help="Only the lines of this trace id."),
    version: int | None = typer.Option(None, "--version", min=1, help="Only this model version."),
    query: str | None = typer.Option(None, "--query", help="An extra LogsQL filter, e.g. 'level:error'."),
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="At most this many lines."),
    url: str | None = typer.Option(None, "--url", help="Query this log store API instead of the env's."),
    as_json: bool = typer.Option(False, "--json", help="Same as --output json (one object per line)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Search the env's log store for a model's lines (request log, errors, explanations).

    Example: shipway logs iris-classifier --env dev --since 1h --query 'level:error'
    """
    services = services_from(ctx)
    check_stack(services, env)
    try:
        check_window(since, "--since")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc
    models = known_models(services, env)
    if models and model not in models:
        raise typer.BadParameter(f"{model!r} is not a model of '{env}'; its models: {', '.join(models)}",
                                 param_hint="MODEL")
    text = logsql(model, version, window=since, trace_id=trace, extra=query)
    try:
        target = url or query_url(services, env)
        records = search(target, text, limit)
    except LogStoreError as exc:
        err_console().print(f"error: {exc}")
        raise typer.Exit(1) from exc
    if as_json or output is Output.json:
        print_json({"query": text, "url": target, "records": records,
                    "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    else:
        _render(records, text)
