"""`shipway` command line: nouns and verbs (`shipway model promote`, `shipway env status`).

Each noun lives in its own module under ``shipway/commands/`` and is registered here, so
the root stays a table of contents.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import typer

app = typer.Typer(
    name="shipway",
    help="Shipway: one paved path from experiment to production, on Pulumi.",
    no_args_is_help=True,
    add_completion=False,
)

# noun -> (module, help). A module exposes `app: typer.Typer`.
_NOUNS = {
    "platform": ("shipway.commands.platform", "Set up and run the platform (the `local` stack by default)."),
    "model": ("shipway.commands.model", "Promote, roll back and inspect pinned model versions."),
    "env": ("shipway.commands.env", "Environment status: pins, aliases, serving versions, health."),
    "audit": ("shipway.commands.audit", "Read and verify the hash-chained audit trail."),
    "alerts": ("shipway.commands.alerts", "Alerts delivered to the local stack's receiver."),
    "monitor": ("shipway.commands.monitor", "Drift reports and ML reliability signals."),
    "new": ("shipway.commands.new", "Generate new projects from Shipway's paved-path templates."),
    "report": ("shipway.commands.report", "Delivery and reliability figures from the audit trail."),
    "incident": ("shipway.commands.incident", "Open, snapshot and close incidents (evidence for the review)."),
    "test": ("shipway.commands.test_cmd", "Non-functional tests of a candidate: load, resilience, security."),
}

for _noun, (_module, _help) in _NOUNS.items():
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as exc:  # a noun not built yet must not break the others
        if exc.name != _module:
            raise
        continue
    app.add_typer(_mod.app, name=_noun, help=_help)


ROOT_OPTION = typer.Option(
    None, "--root", envvar="SHIPWAY_ROOT", file_okay=False, exists=True,
    help="Project checkout to act on (default: the one this CLI is installed from).",
)


@app.callback()
def _root(root: Path | None = ROOT_OPTION) -> None:
    """Shipway: one paved path from experiment to production, on Pulumi."""
    if root is not None:
        os.environ["SHIPWAY_ROOT"] = str(root.resolve())


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
