"""The Pulumi engine as Shipway runs it: the project-built CLI, the local file backend.

Everything that runs `pulumi` (the CLI commands, the tests, CI) goes through
:func:`pulumi_env` so the same backend, passphrase policy and no-download settings apply
everywhere. Stacks are driven with the Automation API against that CLI.
"""

from __future__ import annotations

import os
import shutil
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


def stack_outputs(env: str, root: Path | None = None) -> dict[str, Any]:
    """Current outputs of an environment's stack (plain values; secrets stay masked)."""
    stack = select_stack(env, root, create=False)
    return {k: v.value for k, v in stack.outputs().items()}


def up(env: str, message: str, on_output: Callable[[str], None] | None = None,
       root: Path | None = None) -> dict[str, Any]:
    """`pulumi up` on an environment's stack; returns a small summary."""
    stack = select_stack(env, root)
    result = stack.up(message=message, on_output=on_output, color="never")
    return {
        "result": result.summary.result,
        "resourceChanges": dict(result.summary.resource_changes or {}),
        "outputs": {k: v.value for k, v in result.outputs.items()},
    }


def destroy(env: str, on_output: Callable[[str], None] | None = None, root: Path | None = None) -> dict[str, Any]:
    """`pulumi destroy` on an environment's stack."""
    stack = select_stack(env, root)
    result = stack.destroy(on_output=on_output, color="never")
    return {"result": result.summary.result, "resourceChanges": dict(result.summary.resource_changes or {})}
