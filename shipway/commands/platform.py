"""`shipway platform up|down|train`: run the platform of a stack (the `local` stack by default)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from shipway_core.config import StackConfig, StackConfigError, load_stack_file
from shipway_core.local import direct_store

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


def _echo(line: str) -> None:
    """Stream the engine's progress lines (they arrive without their newline)."""
    text = line.rstrip("\n")
    if text.strip():
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def stack_config(root: Path, stack: str) -> StackConfig:
    """The validated stack file (bad input: a usage error naming the stack, or exit 2 listing every key)."""
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        have = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml")
                      for p in (root / "stacks").glob("Pulumi.*.yaml"))
        raise typer.BadParameter(f"no stack file {path.relative_to(root)}; stacks: {', '.join(have)}",
                                 param_hint="--stack")
    try:
        return load_stack_file(path, require_secrets=True)
    except StackConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def registry_uri(cfg: StackConfig, root: Path) -> str:
    """The registry to use now: the running tracking server, else its store directly (local only)."""
    if cfg.registry_uri:
        return cfg.registry_uri
    server = f"http://127.0.0.1:{cfg.local.tracking_port}"
    if _http_ok(server + "/health"):
        return server
    store, _ = direct_store(cfg, root)
    return store


def _pins_ready(cfg: StackConfig, uri: str) -> list[str]:
    """Pre-flight: every pinned version exists and is READY. Returns the problems."""
    from shipway.registry import Registry, RegistryError

    registry = Registry(uri, probe=False)
    problems = []
    for name, pin in sorted(cfg.models.items()):
        try:
            registry.require_ready(name, pin.version)
        except RegistryError as exc:
            problems.append(f"{exc} (registry at {uri}); register it or pin an existing version in "
                            f"stacks/Pulumi.{cfg.stack}.yaml")
    return problems


def _sample_prediction(outputs: dict[str, Any]) -> tuple[str, Any]:
    from shipway.example import MODEL_NAME, sample_request

    endpoint = outputs["endpoints"][MODEL_NAME]
    key = Path(endpoint["apiKeyRef"]).read_text().strip()
    req = urllib.request.Request(  # noqa: S310 - loopback URL from stack outputs
        endpoint["url"] + "/invocations", data=json.dumps(sample_request(2)).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL from stack outputs
        return endpoint["url"], json.loads(resp.read())


@app.command()
def up(
    stack: str = typer.Option("local", help="Stack (environment) to bring up."),
    train: bool = typer.Option(True, help="Train and register the example model first (idempotent)."),
) -> None:
    """Train + register the example model, pre-flight the pins, then `pulumi up` the stack.

    Example: shipway platform up --stack local
    """
    from shipway import engine
    from shipway.example import MODEL_NAME, train_and_register

    root = engine.repo_root()
    cfg = stack_config(root, stack)
    if cfg.cloud != "local":
        raise typer.BadParameter(f"stack '{stack}' targets {cfg.cloud}; `platform up` runs local stacks only — "
                                 "deploy cloud stacks through CI (docs/gitops.md)", param_hint="--stack")
    uri = registry_uri(cfg, root)
    if train and MODEL_NAME in cfg.models:

        with console.status(f"training + registering {MODEL_NAME} ..."):
            reg = train_and_register(uri, artifact_root=direct_store(cfg, root)[1])
        verb = "registered" if reg.created else "already registered"
        console.print(f"model {reg.name} v{reg.version} {verb} (golden accuracy {reg.accuracy:.3f})")
    problems = _pins_ready(cfg, uri)
    if problems:
        for p in problems:
            console.print(f"[red]pre-flight: {p}[/red]")
        console.print("nothing was changed.")
        raise typer.Exit(3)
    console.print(f"pulumi up --stack {stack} ...")
    summary = engine.up(stack, message="shipway platform up", on_output=_echo)
    outputs = summary["outputs"]
    changes = {k: v for k, v in summary["resourceChanges"].items() if k != "same"}
    console.print(f"changes: {changes or 'none'}")
    out = Console()
    out.print(f"tracking server : {outputs['trackingUri']}")
    for model, ep in sorted(outputs["endpoints"].items()):
        out.print(f"endpoint        : {model} v{ep['version']} at {ep['url']}/invocations")
    out.print(f"prometheus      : {outputs['observability']['metricsUrl']}")
    if MODEL_NAME in outputs["endpoints"]:
        url, prediction = _sample_prediction(outputs)
        out.print(f"sample prediction from {url}: {json.dumps(prediction)}")
    for line in record_first_deploys(cfg, outputs, root):
        out.print(line)


def _first_check(cfg: StackConfig, model: str, version: int, endpoint: dict[str, Any]) -> Any:
    """The deployment check for a first up: the endpoint serves exactly the pinned version."""
    from shipway.audit import FirstVerification
    from shipway.verify import verify_deployment

    key_file = endpoint.get("apiKeyRef")
    api_key = Path(key_file).read_text().strip() if key_file and Path(key_file).is_file() else None
    result = verify_deployment(model=model, version=version, url=str(endpoint["url"]), api_key=api_key,
                               features=None, offline=None, slo=cfg.slo)
    return FirstVerification(result.ok, result.as_dict())


def record_first_deploys(cfg: StackConfig, outputs: dict[str, Any], root: Path,
                         audit_path: Path | None = None) -> list[str]:
    """Known-good from day one: verify and record each model whose env has no known-good version
    yet, so `shipway model rollback NAME --env <stack>` has a target after a fresh start."""
    from shipway import audit

    log = audit.AuditLog(audit_path or root / audit.DEFAULT_RELATIVE_PATH)
    try:
        actor = audit.resolve_actor(root, None)
    except audit.AuditError:
        actor = "shipway-platform-up"  # a fresh clone may have no git identity; say it was the automation
    lines = []
    for model, pin in sorted(cfg.models.items()):
        endpoint = (outputs.get("endpoints") or {}).get(model)
        if not endpoint:
            continue
        record = audit.record_first_known_good(
            log, env=cfg.environment, model=model, version=pin.version, actor=actor,
            commit=audit.git_commit(root), verify=lambda m=model, v=pin.version, e=endpoint: _first_check(cfg, m, v, e),
            reason="first deploy (shipway platform up)")
        if record is not None:
            lines.append(f"known-good      : {model} v{pin.version} {record['outcome']} (audit seq {record['seq']})")
    return lines


@app.command()
def down(stack: str = typer.Option("local", help="Stack to destroy.")) -> None:
    """`pulumi destroy` the stack: stops every process it started (registry data is kept on disk).

    Example: shipway platform down --stack local
    """
    from shipway import engine

    root = engine.repo_root()
    stack_config(root, stack)
    summary = engine.destroy(stack, on_output=_echo)
    console.print(f"destroyed: {summary['resourceChanges']}")


@app.command()
def train(
    variant: str = typer.Option("baseline", help="baseline | forest | worse | slow"),
    stack: str = typer.Option("local", help="Stack whose registry receives the model."),
) -> None:
    """Train and register a variant of the example model; prints its registry version.

    Example: shipway platform train --variant forest
    """
    from shipway import engine
    from shipway.example import VARIANTS, train_and_register

    if variant not in VARIANTS:
        raise typer.BadParameter(f"{variant!r} is not a variant; allowed: {', '.join(VARIANTS)}",
                                 param_hint="--variant")
    root = engine.repo_root()
    cfg = stack_config(root, stack)
    reg = train_and_register(registry_uri(cfg, root), variant=variant, artifact_root=direct_store(cfg, root)[1])
    print(json.dumps({"name": reg.name, "version": reg.version, "variant": reg.variant, "created": reg.created,
                      "accuracy": round(reg.accuracy, 4)}))
    sys.stdout.flush()
