"""`shipway model promote|rollback`: move a model's pinned version between environments.

Also holds the small CLI helpers (output format, error mapping, services from the context)
that `env` and `audit` share, so every noun reports errors the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipway.audit import AuditError
from shipway.promotion import (
    Promoter,
    PromoteRequest,
    PromotionError,
    RollbackRequest,
    Services,
    UnknownInput,
)
from shipway.registry import RegistryError
from shipway.stackfile import StackFileError
from shipway.verify import VerificationError
from shipway_core.config import ENVIRONMENTS
from shipway_core.names import is_model_name

app = typer.Typer(no_args_is_help=True)



class Output(StrEnum):
    """How results are printed: a table for people, JSON for scripts and CI."""

    table = "table"
    json = "json"


OUTPUT_OPTION = typer.Option(Output.table, "--output", "-o", help="Output format: table or json.")
AUDIT_LOG_OPTION = typer.Option(
    None, "--audit-log", help="Audit log path (default: .shipway/audit/audit.jsonl under the repo root)."
)

GOLDEN_OPTION = typer.Option(
    None, "--golden", help="Golden CSV with a 'label' column (default: the version's golden.csv artifact)."
)

# Promote and rollback take the same model, audit and connection inputs, spelled the same way.
NAME_ARGUMENT = typer.Argument(..., help="Registered model name, e.g. iris-classifier.")
REASON_OPTION = typer.Option("", "--reason", help="Why; stored in the audit trail.")
ALLOW_DIRTY_OPTION = typer.Option(False, "--allow-dirty", help="Edit a stack file with uncommitted changes.")
ACTOR_OPTION = typer.Option(None, "--actor", help="Who is acting (default: git config user.email).")
TRACKING_URI_OPTION = typer.Option(None, "--tracking-uri", help="MLflow tracking URI override.")

# ------------------------------------------------------------------- shared helpers


def services_from(ctx: typer.Context, **overrides: Any) -> Services:
    """Services injected by tests through ``ctx.obj``, else the real ones; CLI options override."""
    base = ctx.obj if isinstance(ctx.obj, Services) else Services()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base


def check_env_option(env: str, hint: str) -> str:
    """Unknown environment names are bad input (exit 2 with usage), not a runtime failure."""
    if env not in ENVIRONMENTS:
        raise typer.BadParameter(
            f"{env!r} is not an environment; allowed: {', '.join(ENVIRONMENTS)}", param_hint=hint
        )
    return env


def check_model_name(name: str) -> str:
    if not is_model_name(name):
        raise typer.BadParameter(
            f"{name!r} is not a valid model name; use lowercase letters, digits and '-', "
            "2-63 chars, starting with a letter",
            param_hint="NAME",
        )
    return name


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def progress(output: Output, first: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr for slow steps (model loading, pulumi up, probes); silent for JSON."""
    if output is Output.json:
        yield lambda _msg: None
        return
    with err_console().status(first) as status:
        yield lambda msg: status.update(msg)


def fail(message: str, outcome: dict[str, Any] | None, output: Output) -> typer.Exit:
    """Print the reason (stderr) and, for JSON, what happened so far (stdout); exit 1."""
    if output is Output.json:
        print_json({"ok": False, "error": message, **(outcome or {})})
    err_console().print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


@contextlib.contextmanager
def cli_errors(output: Output) -> Iterator[None]:
    """Map domain errors to CLI behaviour: bad input -> BadParameter, failures -> exit 1."""
    try:
        yield
    except UnknownInput as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.param) from exc
    except PromotionError as exc:
        raise fail(str(exc), exc.outcome, output) from exc
    except (StackFileError, RegistryError, AuditError, VerificationError) as exc:
        raise fail(str(exc), None, output) from exc


def add_row(table: Table, *cells: Any) -> None:
    """Rows hold user and model text (e.g. "[0.0, 1.0]"): never let rich read it as markup."""
    table.add_row(*(escape(str(c)) for c in cells))


def _gate_rows(table: Table, outcome: dict[str, Any]) -> None:
    for gate, result in ((outcome.get("gates") or {}).get("gates") or {}).items():
        add_row(table, f"gate {gate}", ("pass: " if result["passed"] else "FAIL: ") + result["message"])


def render_outcome(outcome: dict[str, Any], output: Output) -> None:
    """Print a promotion/rollback outcome."""
    if output is Output.json:
        print_json({"ok": True, **outcome})
        return
    table = Table(title=f"{outcome['model']} in {outcome['env']}", show_header=False)
    add_row(table, "status", str(outcome.get("status")))
    add_row(table, "version", f"{outcome.get('from_version')} -> {outcome.get('to_version')}")
    add_row(table, "stack file", str(outcome.get("stack_file")))
    _gate_rows(table, outcome)
    if "apply" in outcome:
        add_row(table, "pulumi up", str(outcome["apply"].get("result")))
    if "verification" in outcome:
        add_row(
            table,
            "verification",
            "ok" if outcome["verification"]["ok"] else outcome["verification"]["reason"],
        )
    if outcome.get("message"):
        add_row(table, "note", outcome["message"])
    Console(highlight=False).print(table)


# ------------------------------------------------------------------------ commands


def _run(
    ctx: typer.Context,
    output: Output,
    first: str,
    act: Callable[[Promoter], dict[str, Any]],
    *,
    actor: str | None,
    tracking_uri: str | None,
    audit_log: Path | None,
) -> None:
    """Promote and rollback differ only in the request: errors, progress, services and output
    are handled the same way for both."""
    with cli_errors(output), progress(output, first) as step:
        services = services_from(
            ctx, actor=actor, tracking_uri=tracking_uri, audit_path=audit_log, progress=step
        )
        outcome = act(Promoter(services))
    render_outcome(outcome, output)


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: str = NAME_ARGUMENT,
    to: str = typer.Option(..., "--to", help=f"Target environment: {', '.join(ENVIRONMENTS)}."),
    version: int | None = typer.Option(
        None, "--version", min=1, help="Registry version (default: the one pinned in the previous env)."
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Also run `pulumi up` on the stack and verify the deploy."
    ),
    reason: str = REASON_OPTION,
    golden: Path | None = GOLDEN_OPTION,
    allow_dirty: bool = ALLOW_DIRTY_OPTION,
    actor: str | None = ACTOR_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Run the quality gates and pin a model version in an environment's stack file.

    Example:

        shipway model promote iris-classifier --to test --reason "weekly retrain" --apply
    """
    check_model_name(name)
    check_env_option(to, "--to")
    request = PromoteRequest(
        model=name,
        to_env=to,
        version=version,
        apply=apply,
        reason=reason,
        golden=golden,
        allow_dirty=allow_dirty,
    )
    _run(
        ctx,
        output,
        f"promoting {name} to {to}",
        lambda promoter: promoter.promote(request),
        actor=actor,
        tracking_uri=tracking_uri,
        audit_log=audit_log,
    )


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = NAME_ARGUMENT,
    env: str = typer.Option(..., "--env", help=f"Environment: {', '.join(ENVIRONMENTS)}."),
    to: int | None = typer.Option(
        None, "--to", min=1, help="Version to go back to (default: last known-good from the audit trail)."
    ),
    apply: bool = typer.Option(True, "--apply/--no-apply", help="Run `pulumi up` and verify (default: yes)."),
    reason: str = REASON_OPTION,
    golden: Path | None = GOLDEN_OPTION,
    allow_dirty: bool = ALLOW_DIRTY_OPTION,
    actor: str | None = ACTOR_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Pin the last known-good version again (no gates: it already passed them) and deploy it.

    Example:

        shipway model rollback iris-classifier --env prod --reason "p99 alert"
    """
    check_model_name(name)
    check_env_option(env, "--env")
    request = RollbackRequest(
        model=name,
        env=env,
        to_version=to,
        apply=apply,
        reason=reason,
        golden=golden,
        allow_dirty=allow_dirty,
    )
    _run(
        ctx,
        output,
        f"rolling back {name} in {env}",
        lambda promoter: promoter.rollback(request),
        actor=actor,
        tracking_uri=tracking_uri,
        audit_log=audit_log,
    )
