"""`shipway model promote|rollback`: move a model's pinned version between environments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from shipway.commands.common import (
    ACTOR_OPTION,
    ALLOW_DIRTY_OPTION,
    AUDIT_LOG_OPTION,
    GOLDEN_OPTION,
    NAME_ARGUMENT,
    OUTPUT_OPTION,
    REASON_OPTION,
    TRACKING_URI_OPTION,
    Output,
    add_row,
    check_env_option,
    check_model_name,
    cli_errors,
    print_json,
    progress,
    services_from,
    table_console,
)
from shipway.promotion import Outcome, Promoter, PromoteRequest, RollbackRequest
from shipway_core.config import ENVIRONMENTS

app = typer.Typer(no_args_is_help=True)



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
    if "decision" in outcome:
        add_row(table, "alarms", outcome["decision"]["reason"])
    if "prepare" in outcome:
        add_row(table, "prepare", f"{outcome['prepare'].get('action')} {outcome['prepare'].get('target', '')}".strip())
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
    if outcome.get("timings"):
        add_row(table, "seconds", ", ".join(f"{step} {s:.2f}" for step, s in outcome["timings"].items()))
    table_console().print(table)


# ------------------------------------------------------------------------ commands


def _run(
    ctx: typer.Context,
    output: Output,
    first: str,
    act: Callable[[Promoter], Outcome],
    *,
    actor: str | None,
    tracking_uri: str | None,
    audit_log: Path | None,
    background_verification: bool | None = None,
) -> None:
    """Promote and rollback differ only in the request: errors, progress, services and output
    are handled the same way for both."""
    with cli_errors(output), progress(output, first) as step:
        services = services_from(
            ctx, actor=actor, tracking_uri=tracking_uri, audit_path=audit_log, progress=step,
            background_verification=background_verification,
        )
        outcome = act(Promoter(services))
    render_outcome(outcome.as_dict(), output)


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
    when_alarming: bool = typer.Option(
        False, "--when-alarming",
        help="Roll back only if a guardrail alarm (error rate, p99, drift) of the endpoint is firing; "
             "otherwise change nothing and say why.",
    ),
    full_verification: bool = typer.Option(
        False, "--full-verification",
        help="Wait for the full SLO probe (sized by statistics, ~300 requests) before returning. Default on "
             "the local target: a 10-request smoke probe before returning, the full probe in the background, "
             "its verdict appended to the audit trail (the first verify record says 'pending').",
    ),
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

        shipway model rollback iris-classifier --env prod --when-alarming   # CI: only if an alarm fires
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
        when_alarming=when_alarming,
    )
    _run(
        ctx,
        output,
        f"rolling back {name} in {env}",
        lambda promoter: promoter.rollback(request),
        actor=actor,
        tracking_uri=tracking_uri,
        audit_log=audit_log,
        background_verification=not full_verification,
    )
