"""What every `shipway` command shares: output format, options spelled once, services from the
context, progress display and the mapping from domain errors to CLI exits."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipway.audit import AuditError
from shipway.locks import LockBusy
from shipway.promotion import PromotionError, Services, UnknownInput
from shipway.registry import RegistryError
from shipway.stackfile import StackFileError
from shipway.targets.base import TargetError
from shipway.verify import VerificationError
from shipway_core.config import ENVIRONMENTS
from shipway_core.names import MODEL_NAME_RULE, is_model_name


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
            f"{name!r} is not a valid model name; use {MODEL_NAME_RULE}",
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
    except (StackFileError, RegistryError, AuditError, VerificationError, LockBusy, TargetError) as exc:
        # TargetError: a target adapter could not do its part (e.g. the Azure registry lacks the version)
        raise fail(str(exc), None, output) from exc


def add_row(table: Table, *cells: Any) -> None:
    """Rows hold user and model text (e.g. "[0.0, 1.0]"): never let rich read it as markup."""
    table.add_row(*(escape(str(c)) for c in cells))


def table_console() -> Console:
    """Tables for people: full width on a terminal, never cut to 80 columns when piped."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 240)
