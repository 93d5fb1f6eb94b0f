"""The Pulumi engine as Shipway runs it: the project-built CLI, the local file backend.

Everything that runs `pulumi` (the CLI commands, the tests, CI) goes through
:func:`pulumi_env` so the same backend, passphrase policy and no-download settings apply
everywhere. Stacks are driven with the Automation API against that CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The local stack's secrets are encrypted with a passphrase. This default is documented
# (docs/security.md) and only valid for the `local` stack: its secrets protect a
# developer's own machine. Other stacks must be given PULUMI_CONFIG_PASSPHRASE explicitly
# (or use a KMS/Key Vault secrets provider).
LOCAL_DEV_PASSPHRASE = "shipway-local-dev"  # noqa: S105 - documented dev-only default

PULUMI_VERSION = "3.274.1"


ROOT_VARIABLE = "SHIPWAY_ROOT"


def repo_root() -> Path:
    """The project root: the directory holding Pulumi.yaml.

    ``shipway --root DIR`` (or ``SHIPWAY_ROOT=DIR``) points the CLI at another checkout of the
    project, e.g. a throwaway copy the benchmarks drive; by default it is this package's checkout.
    """
    chosen = os.environ.get(ROOT_VARIABLE)
    if chosen:
        root = Path(chosen).resolve()
        if not (root / "Pulumi.yaml").exists():
            raise RuntimeError(f"{ROOT_VARIABLE}={chosen!r} holds no Pulumi.yaml; point it at a Shipway checkout")
        return root
    here = Path(__file__).resolve().parent.parent
    if (here / "Pulumi.yaml").exists():
        return here
    raise RuntimeError(f"Pulumi.yaml not found above {Path(__file__)}; run shipway from its checkout")


def tools_bin(root: Path | None = None) -> Path:
    """Where setup puts the built pulumi CLI, its language host and plugin scripts (a checkout
    chosen with --root that has no tools of its own uses the installed checkout's)."""
    chosen = (root or repo_root()) / ".shipway" / "tools" / "bin"
    installed = Path(__file__).resolve().parent.parent / ".shipway" / "tools" / "bin"
    return chosen if chosen.is_dir() or not installed.is_dir() else installed


def state_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / ".shipway" / "state"


def pulumi_env(stack: str | None = None, root: Path | None = None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running `pulumi` against the project's file backend.

    ``base`` defaults to the current process environment (PATH, HOME...). The passphrase
    is only defaulted for the ``local`` stack (and throwaway test stacks named ``t-*``).
    """
    root = root or repo_root()
    env = dict(os.environ if base is None else base)
    bin_dir = tools_bin(root)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    state = state_dir(root)
    state.mkdir(parents=True, exist_ok=True)
    env.setdefault("PULUMI_BACKEND_URL", f"file://{state}")
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env.setdefault("PULUMI_HOME", str(root / ".shipway" / "pulumi-home"))
    venv_python = root / ".venv" / "bin" / "python"
    env["PULUMI_PYTHON_CMD"] = str(venv_python if venv_python.exists() else Path(sys.executable))
    if stack is not None and (stack == "local" or stack.startswith("t-")):
        env.setdefault("PULUMI_CONFIG_PASSPHRASE", LOCAL_DEV_PASSPHRASE)
    return env


def pulumi_binary(root: Path | None = None) -> Path:
    """The CLI the project built, or a `pulumi` already on PATH."""
    built = tools_bin(root) / "pulumi"
    if built.exists():
        return built
    found = shutil.which("pulumi")
    if found:
        return Path(found)
    raise RuntimeError("the pulumi CLI is not built yet: run `make setup` (see README)")


def select_stack(stack: str, root: Path | None = None, create: bool = True) -> Any:
    """A Pulumi Automation API stack for ``stacks/Pulumi.<stack>.yaml``, using the built CLI."""
    from pulumi import automation as auto

    root = root or repo_root()
    env = pulumi_env(stack, root)
    cmd = auto.PulumiCommand(root=str(pulumi_binary(root).parent.parent), skip_version_check=True)
    ws = auto.LocalWorkspace(work_dir=str(root), env_vars=env, pulumi_command=cmd)
    if create:
        return auto.Stack.create_or_select(stack, ws)
    return auto.Stack.select(stack, ws)


def _pulumi(root: Path, stack: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """One run of the built CLI against ``stack`` (``--stack`` on the command line: no `stack select`)."""
    return subprocess.run([str(pulumi_binary(root)), *args, "--stack", stack, "--non-interactive"], cwd=root,
                          env=pulumi_env(stack, root), text=True, capture_output=True, timeout=timeout, check=False)


def stack_outputs(env: str, root: Path | None = None) -> dict[str, Any]:
    """Current outputs of an environment's stack (plain values, secrets shown as the Automation
    API's ``outputs()`` gives them): one `pulumi stack output` run (~0.35 s; the Automation API
    ran three CLI processes for the same answer)."""
    root = root or repo_root()
    out = _pulumi(root, env, "stack", "output", "--json", "--show-secrets", timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"pulumi stack output --stack {env} failed: {out.stderr.strip() or out.stdout.strip()}")
    values = json.loads(out.stdout or "{}")
    return dict(values) if isinstance(values, dict) else {}


def up(env: str, message: str, on_output: Callable[[str], None] | None = None,
       root: Path | None = None) -> dict[str, Any]:
    """`pulumi up` on an environment's stack; returns a small summary.

    Without ``on_output`` (promote, rollback) this is one `pulumi up --skip-preview --json` run,
    whose events carry the summary and the stack's outputs (a second run reads them only when one
    is a secret, masked in events): the Automation API adds a `stack select` before and three CLI
    runs after (outputs twice, history) - ~1.3 s of a rollback. A stack that does not exist yet
    goes through the Automation API, which creates it.
    """
    root = root or repo_root()
    if on_output is None:
        fast = _up_json(root, env, message)
        if fast is not None:
            return fast
    stack = select_stack(env, root)
    result = stack.up(message=message, on_output=on_output, color="never")
    return {
        "result": result.summary.result,
        "resourceChanges": dict(result.summary.resource_changes or {}),
        "outputs": {k: v.value for k, v in result.outputs.items()},
    }


def _up_json(root: Path, env: str, message: str) -> dict[str, Any] | None:
    """`pulumi up --json` of an existing stack: its summary event and outputs; None when the stack
    does not exist. A failed update raises with the engine's error diagnostics."""
    out = _pulumi(root, env, "up", "--yes", "--skip-preview", "--json", "--message", message)
    summary: dict[str, Any] = {}
    outputs: Any = None
    errors: list[str] = []
    for line in out.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "summaryEvent" in event:
            summary = event["summaryEvent"]
        meta = (event.get("resOutputsEvent") or {}).get("metadata") or {}
        if meta.get("type") == "pulumi:pulumi:Stack":
            outputs = (meta.get("new") or {}).get("outputs")
        diag = event.get("diagnosticEvent") or {}
        if diag.get("severity") == "error":
            errors.append(str(diag.get("message", "")).strip())
    if out.returncode != 0 or summary.get("result", "failed") != "succeeded":
        if not summary and "no stack named" in out.stderr:
            return None
        detail = "; ".join(e for e in errors if e) or out.stderr.strip()[-2000:] or f"exit {out.returncode}"
        raise RuntimeError(f"pulumi up --stack {env} failed: {detail}")
    if not isinstance(outputs, dict) or "[secret]" in json.dumps(outputs):
        outputs = stack_outputs(env, root)  # secrets are masked in events: read them in plain
    return {"result": summary["result"], "resourceChanges": dict(summary.get("resourceChanges") or {}),
            "outputs": outputs}


def destroy(env: str, on_output: Callable[[str], None] | None = None, root: Path | None = None) -> dict[str, Any]:
    """`pulumi destroy` on an environment's stack."""
    stack = select_stack(env, root)
    result = stack.destroy(on_output=on_output, color="never")
    return {"result": result.summary.result, "resourceChanges": dict(result.summary.resource_changes or {})}
