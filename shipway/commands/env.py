"""`shipway env status [ENV]`: what each environment pins, points at, serves and last changed.

Status must work when half the platform is down (that is when people run it), so every
source is read independently: a missing stack file, an unreachable registry or a dead
endpoint becomes a cell saying so, never a traceback.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from shipway import stackfile
from shipway.audit import AuditError, AuditLog
from shipway.commands.common import (
    ACTOR_OPTION,
    AUDIT_LOG_OPTION,
    OUTPUT_OPTION,
    REASON_OPTION,
    TRACKING_URI_OPTION,
    Output,
    add_row,
    check_env_option,
    cli_errors,
    print_json,
    progress,
    services_from,
    table_console,
)
from shipway.promotion import Promoter, PromotionError, Services
from shipway.registry import Registry, RegistryError
from shipway.targets import EndpointState, TargetError, adapter_for
from shipway_core.config import ENVIRONMENTS
from shipway_core.local import process_status_files
from shipway_core.outputs import OutputsError, PlatformOutputs

app = typer.Typer()


def _outputs(services: Services, env: str) -> PlatformOutputs | str:
    """The stack's outputs under the platform contract, or why there are none."""
    try:
        exports = dict(services.engine.stack_outputs(env) or {})
    except Exception as exc:
        if type(exc).__name__ == "StackNotFoundError" or "no stack named" in str(exc).lower():
            return "not deployed"
        return f"no stack outputs ({type(exc).__name__})"
    if not exports:
        return "not deployed"
    try:
        return PlatformOutputs.from_exports(exports, stack=env)
    except OutputsError as exc:
        return str(exc).splitlines()[0]


def _registry(
    services: Services, cfg: Any, outputs: PlatformOutputs | str, cache: dict[str, Any]
) -> Registry | str:
    """The env's registry (through its target adapter once deployed), or a short reason it cannot be
    reached; cached per URI."""
    uri = services.tracking_uri or cfg.registry_uri
    if not uri and isinstance(outputs, PlatformOutputs):
        uri = outputs.registry_uri
    if not uri:
        return "unknown (no tracking URI; pass --tracking-uri)"
    if uri not in cache:
        try:
            if isinstance(outputs, PlatformOutputs):
                cache[uri] = adapter_for(outputs, cfg, services.adapter_context()).registry()
            else:
                cache[uri] = services.registry_factory(str(uri))
        except (RegistryError, TargetError) as exc:
            cache[uri] = "unknown (registry unreachable)" if isinstance(exc, RegistryError) else f"unknown ({exc})"
    return cache[uri]


def _restarts(path: Path) -> dict[str, Any]:
    """A local process's supervisor state (restarts since start), or why it is unknown."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"state": "unknown", "restarts": None}
    return {"state": data.get("state", "unknown"), "restarts": data.get("restarts"),
            "last_restart_at": data.get("last_restart_at")}


def _processes(cfg: Any, root: Path) -> dict[str, dict[str, Any]]:
    """Supervisor state of every process the local stack runs (restarts are counted there)."""
    if cfg.cloud != "local":
        return {}
    return {name: _restarts(path) for name, path in process_status_files(cfg, root).items()}


# The platform's own pipeline on the local target: what each component answers when healthy.
PIPELINE_PROBES = (
    ("mlflow", "tracking_uri", "/health"),
    ("prometheus", "metrics_url", "/-/healthy"),
    ("alertmanager", "alerts_url", "/-/healthy"),
    ("jaeger", "traces_url", "/"),
    ("otelcol", None, "/metrics"),
    ("log-store", "log_store_url", "/health"),
)


def _probe(url: str, timeout: float = 2.0) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http:// built below
            return "ok" if response.status < 400 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"unreachable ({getattr(exc, 'reason', exc)})"


def pipeline_health(cfg: Any, outputs: PlatformOutputs) -> dict[str, dict[str, Any]]:
    """Each pipeline component's health on the local target (MLflow, Prometheus, Alertmanager,
    Jaeger, the collector, the log store): probed on 127.0.0.1; absent ones say so."""
    if cfg.cloud != "local":
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for name, key, path in PIPELINE_PROBES:
        if key is None:
            base: str | None = f"http://127.0.0.1:{cfg.local.collector_metrics_port}"
        elif key == "tracking_uri":
            base = outputs.tracking_uri
        else:
            base = getattr(outputs.observability, key)
        if not base or not str(base).startswith("http://"):
            rows[name] = {"url": None, "health": "not deployed"}
            continue
        url = str(base).rstrip("/") + path
        rows[name] = {"url": url, "health": _probe(url)}
    return rows


def _live(services: Services, cfg: Any, outputs: PlatformOutputs,
          audit: AuditLog | None) -> tuple[dict[str, EndpointState], str]:
    """Every endpoint's live state from the stack's target adapter, or why it cannot be read."""
    try:
        return adapter_for(outputs, cfg, services.adapter_context(audit)).status(), ""
    except Exception as exc:  # a broken adapter or missing credentials is a cell, not a traceback
        return {}, f"live status unreadable: {type(exc).__name__}: {exc}"


def _endpoint_status(live: dict[str, EndpointState], why: str, outputs: PlatformOutputs,
                     model: str) -> dict[str, Any]:
    """Health, serving version and traffic split of one endpoint, as its target reports them."""
    state = live.get(model)
    if state is None:
        deployed = outputs.endpoints.get(model)
        detail = why or "no endpoint output"
        if deployed is not None:
            detail = f"deployed at version {deployed.version}; {detail}"
        return {"health": "unknown" if why else "down", "serving_version": None, "detail": detail}
    return {"health": state.state, "serving_version": state.served_version, "detail": state.detail,
            "endpoint": state.name, "traffic": dict(state.traffic)}


def _last_change(audit: AuditLog | None, env: str, model: str) -> dict[str, Any] | None:
    if audit is None:
        return None
    rec = audit.last_change(env, model)
    if rec is None:
        return None
    return {k: rec.get(k) for k in ("seq", "ts", "actor", "action", "outcome", "from_version", "to_version")}


def _alias(registry: Registry | str | None, model: str, env: str) -> dict[str, Any]:
    """Version the env-named alias points at; "unknown" plus the reason when it cannot be read."""
    if registry is None:
        return {"alias": None, "alias_detail": ""}
    if isinstance(registry, str):
        return {"alias": "unknown", "alias_detail": registry}
    try:
        return {"alias": registry.alias_target(model, env), "alias_detail": ""}
    except Exception as exc:
        return {"alias": "unknown", "alias_detail": type(exc).__name__}


def env_status(services: Services, env: str, audit: AuditLog | None, cache: dict[str, Any]) -> dict[str, Any]:
    """One environment's status; every unavailable source is reported, not raised."""
    path = stackfile.stack_path(services.repo_root(), env)
    row: dict[str, Any] = {"env": env, "stack_file": str(path), "error": None, "models": []}
    try:
        cfg = stackfile.load_config(path)
    except stackfile.StackFileError as exc:
        row["error"] = str(exc)
        return row
    outputs: PlatformOutputs | str = _outputs(services, env)
    row["deployed"] = isinstance(outputs, PlatformOutputs)
    row["processes"] = _processes(cfg, services.repo_root()) if row["deployed"] else {}
    registry = _registry(services, cfg, outputs, cache) if cfg.models else None
    live, why = _live(services, cfg, outputs, audit) if isinstance(outputs, PlatformOutputs) else ({}, "")
    row["pipeline"] = pipeline_health(cfg, outputs) if isinstance(outputs, PlatformOutputs) else {}
    for name, pin in sorted(cfg.models.items()):
        model: dict[str, Any] = {
            "model": name,
            "pinned": pin.version,
            **_alias(registry, name, env),
        }
        if isinstance(outputs, PlatformOutputs):
            model.update(_endpoint_status(live, why, outputs, name))
        else:
            health = "not deployed" if outputs == "not deployed" else "unknown"
            model.update(health=health, serving_version=None, detail=outputs)
        model["restarts"] = (row["processes"].get(f"endpoint/{name}") or {}).get("restarts")
        model["last_change"] = _last_change(audit, env, name)
        row["models"].append(model)
    return row


def _render(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Shipway environments")
    for col in ("env", "model", "pinned", "alias", "serving", "health", "restarts", "last change"):
        table.add_column(col)
    for row in rows:
        if row["error"]:
            add_row(table, row["env"], "-", "-", "-", "-", "-", "-", row["error"])
            continue
        if not row["models"]:
            add_row(table, row["env"], "(no models pinned)", "", "", "", "", "", "")
        for m in row["models"]:
            last = m["last_change"]
            change = (
                f"#{last['seq']} {last['action']} {last['outcome']} by {last['actor']} at {last['ts']}"
                if last
                else "-"
            )
            add_row(
                table,
                row["env"],
                m["model"],
                str(m["pinned"]),
                "-" if m["alias"] is None else str(m["alias"]),
                "-" if m["serving_version"] is None else str(m["serving_version"]),
                str(m["health"]),
                "-" if m.get("restarts") is None else str(m["restarts"]),
                change,
            )
        for name, proc in sorted(row.get("processes", {}).items()):
            if not name.startswith("endpoint/"):
                add_row(table, row["env"], f"({name})", "", "", "", str(proc["state"]),
                        "-" if proc["restarts"] is None else str(proc["restarts"]), "")
        for name, probe in sorted(row.get("pipeline", {}).items()):
            add_row(table, row["env"], f"(pipeline: {name})", "", "", "", probe["health"], "", probe["url"] or "-")
    table_console().print(table)


@app.command("status")
def status(
    ctx: typer.Context,
    env: str | None = typer.Argument(
        None, help=f"One environment ({', '.join(ENVIRONMENTS)}); default: all."
    ),
    tracking_uri: str | None = TRACKING_URI_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Pins (stack files), registry alias, serving version, health and last change per environment.

    Example:

        shipway env status prod --output json
    """
    envs = [check_env_option(env, "ENV")] if env else list(ENVIRONMENTS)
    services = services_from(ctx, tracking_uri=tracking_uri, audit_path=audit_log)
    audit: AuditLog | None = services.audit()
    try:
        audit.records() if audit else None
    except AuditError:
        audit = None  # a damaged trail must not hide the rest; `shipway audit verify` reports it
    cache: dict[str, Any] = {}
    with progress(output, "reading environment status") as step:
        rows = []
        for name in envs:
            step(f"reading status of '{name}'")
            rows.append(env_status(services, name, audit, cache))
    if output is Output.json:
        print_json({"envs": rows})
    else:
        _render(rows)


@app.command("preflight")
def preflight(
    ctx: typer.Context,
    env: str = typer.Argument(..., help=f"Environment: {', '.join(ENVIRONMENTS)}."),
    tracking_uri: str | None = TRACKING_URI_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Check every pinned version exists and is READY in the env's registry; run before every `pulumi up`.

    A missing or unready version exits 1 naming it, so `up` never starts on a pin the registry
    cannot serve.

    Example:

        shipway env preflight prod && pulumi up --stack prod
    """
    check_env_option(env, "ENV")
    with cli_errors(output), progress(output, f"pre-flight of '{env}'") as step:
        services = services_from(ctx, tracking_uri=tracking_uri, progress=step)
        report = Promoter(services).preflight_env(env)
    if output is Output.json:
        print_json(report)
    else:
        pins = ", ".join(f"{m} v{v}" for m, v in report["pins"].items())
        typer.echo(f"{env}: every pinned version is READY ({pins})")


@app.command("verify")
def verify(
    ctx: typer.Context,
    env: str = typer.Argument(..., help=f"Environment: {', '.join(ENVIRONMENTS)}."),
    reason: str = REASON_OPTION,
    actor: str | None = ACTOR_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Verify every pinned model of a deployed environment through its target (CI runs this after `up`).

    Each model: the endpoint serves the pinned version, answers its golden rows like the registry
    version offline, and a probe stays within the env's SLO; each result is an audit record. Exits 1
    when any model fails.

    Example:

        shipway env verify dev --output json > verify/dev.json
    """
    check_env_option(env, "ENV")
    with cli_errors(output), progress(output, f"verifying '{env}'") as step:
        services = services_from(ctx, actor=actor, tracking_uri=tracking_uri, audit_path=audit_log, progress=step)
        report = Promoter(services).verify_env(env, reason)
    if output is Output.json:
        print_json(report)
    else:
        table = Table(title=f"verification of {env}")
        for col in ("model", "version", "result"):
            table.add_column(col)
        for model, result in report["models"].items():
            add_row(table, model, str(result["version"]), "ok" if result["ok"] else result["reason"])
        table_console().print(table)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("revert-pins")
def revert_pins(
    ctx: typer.Context,
    env: str = typer.Argument(..., help=f"Environment: {', '.join(ENVIRONMENTS)}."),
    since: str = typer.Option(..., "--since", help="Git revision whose pins to go back to (a push's before-SHA)."),
    reason: str = REASON_OPTION,
    actor: str | None = ACTOR_OPTION,
    audit_log: Path | None = AUDIT_LOG_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Pin again every model whose version changed since a revision (no `up`; CI applies and verifies).

    Each re-pin is a `shipway model rollback --no-apply` with its audit record. `changed` in the
    JSON is empty when no pin changed (then a failed deploy was a platform change: revert the commit).

    Example:

        shipway env revert-pins prod --since "$BEFORE_SHA" --reason "deploy failed" --output json
    """
    check_env_option(env, "ENV")
    with cli_errors(output), progress(output, f"reverting pins of '{env}' to {since}") as step:
        services = services_from(ctx, actor=actor, audit_path=audit_log, progress=step)
        report = Promoter(services).revert_pins(env, since, reason)
    if output is Output.json:
        print_json(report)
    else:
        table = Table(title=f"pins of {env} reverted to {since}")
        for col in ("model", "from", "to"):
            table.add_column(col)
        for outcome in report["changed"]:
            add_row(table, outcome["model"], str(outcome["from_version"]), str(outcome["to_version"]))
        table_console().print(table)


CAPTURE_OUT_OPTION = typer.Option(Path("windows"), "--out", help="Directory for one <model>.csv per pinned model.")


@app.command("capture")
def capture(
    ctx: typer.Context,
    env: str = typer.Argument(..., help=f"Environment: {', '.join(ENVIRONMENTS)}."),
    day: str = typer.Option(..., "--day", help="UTC day of the captured traffic, YYYY-MM-DD."),
    out: Path = CAPTURE_OUT_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Write one day of an environment's captured requests per pinned model (input for `monitor drift`).

    Reads the target's data capture (SageMaker data capture in the env's bucket on AWS); a model
    without captured traffic gets no file and a 0 in the summary.

    Example:

        shipway env capture prod --day 2026-12-03 --out windows/
    """
    check_env_option(env, "ENV")
    try:
        when = datetime.date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(f"{day!r} is not a day; use YYYY-MM-DD, e.g. 2026-12-03",
                                 param_hint="--day") from None
    with cli_errors(output), progress(output, f"reading captured traffic of '{env}'"):
        services = services_from(ctx)
        cfg = stackfile.load_config(stackfile.stack_path(services.repo_root(), env))
        adapter = services.adapter(env, cfg)
        reader = getattr(adapter, "captured_rows", None)
        if reader is None:
            raise PromotionError(f"the {adapter.cloud} target has no data capture to read; "
                                 "use the request log (`shipway monitor drift --help`)")
        out.mkdir(parents=True, exist_ok=True)
        summary: dict[str, int] = {}
        for model in sorted(cfg.models):
            rows = reader(model, when.strftime("%Y/%m/%d"))
            summary[model] = 0 if rows is None else len(rows)
            if rows is not None:
                rows.to_csv(out / f"{model}.csv", index=False)
    if output is Output.json:
        print_json({"env": env, "day": day, "rows": summary})
    else:
        for model, count in summary.items():
            typer.echo(f"{model}: {count} captured rows on {day}")
