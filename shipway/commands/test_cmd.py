"""`shipway test load|resilience|security MODEL --version N`: non-functional tests of a candidate.

Example::

    shipway test load iris-classifier --version 4 --env prod --rps 50 --seconds 20
    shipway test resilience iris-classifier --version 4
    shipway test security iris-classifier --version 4 --endpoint --env local

By default the candidate is served by a real serving process on a free 127.0.0.1 port, pinned to
the version in the environment's registry; ``--endpoint`` tests the environment's deployed
endpoint instead. Results are judged against the environment's SLOs, stored on the version as
gate evidence (tag ``shipway.nft.<kind>``) and required for promotion by
``gates.requireNonFunctional`` in the stack file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from shipway import nonfunctional as nft
from shipway import stackfile
from shipway.commands.common import (
    OUTPUT_OPTION,
    TRACKING_URI_OPTION,
    Output,
    add_row,
    check_env_option,
    check_model_name,
    cli_errors,
    fail,
    print_json,
    progress,
    services_from,
    table_console,
)
from shipway.registry import Registry
from shipway_core.config import SloSettings
from shipway_core.outputs import OutputsError, PlatformOutputs

app = typer.Typer(no_args_is_help=True)

NAME = typer.Argument(..., help="Registered model name, e.g. iris-classifier.")
VERSION = typer.Option(..., "--version", help="The candidate's registry version.")
ENV = typer.Option("local", "--env", help="Environment whose SLOs, registry (and endpoint) apply.")
ENDPOINT = typer.Option(False, "--endpoint", help="Test the environment's deployed endpoint, not a local candidate.")
PAYLOAD = typer.Option(None, "--payload", exists=True, dir_okay=False,
                       help="JSON scoring request to send (default: a row of the version's golden.csv).")
STORE = typer.Option(True, "--store/--no-store", help="Store the result on the version as gate evidence.")
OTHER_KEY = typer.Option(None, "--other-env-key-file", exists=True, dir_okay=False,
                         help="API key file of another environment; it must be refused.")


@contextlib.contextmanager
def _target(ctx: typer.Context, model: str, version: int, env: str, tracking_uri: str | None, endpoint: bool,
            other_key: Path | None, say: Any) -> Iterator[tuple[nft.Target, nft.CandidateServer | None, str]]:
    """The target to test, the candidate process (None for an env endpoint) and the registry URI."""
    services = services_from(ctx)
    outputs: PlatformOutputs | None = None
    if endpoint or tracking_uri is None:
        outputs = PlatformOutputs.from_exports(services.engine.stack_outputs(env), stack=env)
    uri = tracking_uri or (outputs.tracking_uri if outputs else "")
    other = other_key.read_text().strip() if other_key else None
    if endpoint:
        assert outputs is not None  # noqa: S101 - read above whenever endpoint is set
        found = outputs.endpoints.get(model)
        if found is None or not found.status.startswith("http"):
            raise typer.BadParameter(f"'{env}' serves no HTTP endpoint for '{model}' "
                                     f"(endpoints: {', '.join(outputs.endpoints) or 'none'})", param_hint="--endpoint")
        if found.version != version:
            raise typer.BadParameter(f"'{env}' serves version {found.version} of '{model}', not {version}",
                                     param_hint="--version")
        key = Path(found.api_key_ref).read_text().strip() if found.api_key_ref else None
        yield nft.Target(found.status, key, other), None, uri
        return
    say(f"starting version {version} of '{model}' as a local candidate")
    with nft.serve_candidate({"model_name": model, "model_version": version, "tracking_uri": uri},
                             environment=f"{env}-candidate") as server:
        base = server.target
        yield nft.Target(base.base_url, base.api_key, other), server, uri


def _payload(path: Path | None, registry: Registry | None, model: str, version: int) -> bytes:
    if path is not None:
        body = path.read_bytes()
        try:
            json.loads(body)
        except ValueError as exc:
            raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint="--payload") from None
        return body
    import pandas as pd

    from shipway.gates import GOLDEN_ARTIFACT, LABEL_COLUMN

    assert registry is not None  # noqa: S101 - _run opens the registry whenever there is no --payload

    found = registry.download_version_file(registry.require_ready(model, version), GOLDEN_ARTIFACT)
    if found is None:
        raise typer.BadParameter(f"version {version} of '{model}' has no {GOLDEN_ARTIFACT}; pass a scoring "
                                 "request with --payload", param_hint="--payload")
    row = pd.read_csv(found).drop(columns=[LABEL_COLUMN], errors="ignore").head(1)
    return json.dumps({"dataframe_split": {"columns": list(row.columns),
                                           "data": row.to_numpy().tolist()}}).encode()


def _slo(ctx: typer.Context, env: str) -> SloSettings:
    path = stackfile.stack_path(services_from(ctx).repo_root(), env)
    return stackfile.load_config(path).slo if path.exists() else SloSettings()


def _report(result: nft.Result, output: Output, stored: bool) -> None:
    if output is Output.json:
        print_json({"ok": result.passed, "stored": stored, **result.as_dict()})
    else:
        table = Table(title=f"shipway test {result.kind}: {result.model} v{result.version} "
                            f"({'PASSED' if result.passed else 'FAILED'})")
        for col in ("check", "result", "detail"):
            table.add_column(col)
        for c in result.checks:
            add_row(table, c.name, "pass" if c.passed else "FAIL", c.detail)
        table_console().print(table)
        if result.figures:
            table_console().print(json.dumps(result.figures, indent=2, default=str))
    if not result.passed:
        raise typer.Exit(code=1)


def _run(ctx: typer.Context, kind: str, name: str, version: int, env: str, tracking_uri: str | None,
         endpoint: bool, payload: Path | None, store: bool, output: Output, other_key: Path | None = None,
         **settings: Any) -> None:
    check_model_name(name)
    check_env_option(env, "--env")
    if version < 1:
        raise typer.BadParameter(f"{version} is not a registry version; use a positive integer", param_hint="--version")
    slo = _slo(ctx, env)
    with cli_errors(output), progress(output, f"{kind} test of '{name}' v{version}") as say:
        try:
            with _target(ctx, name, version, env, tracking_uri, endpoint, other_key, say) as (target, server, uri):
                registry = Registry(uri) if store or payload is None else None
                body = _payload(payload, registry, name, version)
                say(f"running the {kind} test against {target.base_url}")
                if kind == "load":
                    result = nft.load_test(target, body, slo, model=name, version=version, **settings)
                elif kind == "resilience":
                    result = nft.resilience_test(target, body, model=name, version=version, server=server,
                                                 **settings)
                else:
                    result = nft.security_test(target, body, model=name, version=version)
        except (nft.NonFunctionalError, OutputsError) as exc:
            raise fail(str(exc), None, output) from exc
        if registry is not None and store:
            registry.set_tags(name, version, result.evidence_tag())
    _report(result, output, store)


@app.command("load")
def load(ctx: typer.Context, name: str = NAME, version: int = VERSION, env: str = ENV,
         rps: float = typer.Option(50.0, "--rps", help="Requests per second to offer."),
         seconds: float = typer.Option(10.0, "--seconds", help="How long to offer them."),
         concurrency: int = typer.Option(16, "--concurrency", help="Most requests in flight at once."),
         tracking_uri: str | None = TRACKING_URI_OPTION, endpoint: bool = ENDPOINT, payload: Path | None = PAYLOAD,
         store: bool = STORE, output: Output = OUTPUT_OPTION) -> None:
    """Paced load at --rps; p50/p95/p99 and errors against the env's SLOs.

    Example: shipway test load iris-classifier --version 4 --env prod --rps 50 --seconds 20
    """
    if rps <= 0 or seconds <= 0 or concurrency < 1:
        raise typer.BadParameter(f"--rps {rps}, --seconds {seconds} and --concurrency {concurrency} must be "
                                 "positive", param_hint="--rps")
    _run(ctx, "load", name, version, env, tracking_uri, endpoint, payload, store, output,
         rps=rps, seconds=seconds, concurrency=concurrency)


@app.command("resilience")
def resilience(ctx: typer.Context, name: str = NAME, version: int = VERSION, env: str = ENV,
               seconds: float = typer.Option(9.0, "--seconds", help="Length of the kill-under-load run."),
               max_recovery: float = typer.Option(30.0, "--max-recovery-seconds",
                                                  help="Longest acceptable time back to serving after a crash."),
               tracking_uri: str | None = TRACKING_URI_OPTION, endpoint: bool = ENDPOINT,
               payload: Path | None = PAYLOAD, store: bool = STORE, output: Output = OUTPUT_OPTION) -> None:
    """Malformed and oversized inputs, kill and restart under load, a dependency down.

    Example: shipway test resilience iris-classifier --version 4
    """
    _run(ctx, "resilience", name, version, env, tracking_uri, endpoint, payload, store, output,
         seconds=seconds, max_recovery_seconds=max_recovery)


@app.command("security")
def security(ctx: typer.Context, name: str = NAME, version: int = VERSION, env: str = ENV,
             other_key: Path | None = OTHER_KEY, tracking_uri: str | None = TRACKING_URI_OPTION,
             endpoint: bool = ENDPOINT, payload: Path | None = PAYLOAD, store: bool = STORE,
             output: Output = OUTPUT_OPTION) -> None:
    """Access validation: no key, wrong key, another env's key; headers; TLS where configured.

    Example: shipway test security iris-classifier --version 4 --endpoint --env local
    """
    _run(ctx, "security", name, version, env, tracking_uri, endpoint, payload, store, output, other_key)
