"""`shipway` command line: nouns and verbs (`shipway model promote`, `shipway env status`).

Each noun lives in its own module under ``shipway/commands/`` and is registered here, so
the root stays a table of contents. A noun's module is imported only when that noun runs
(or its own ``--help`` is asked for): ``shipway --help`` and ``shipway audit verify`` do not
pay for pandas, scipy and MLflow that ``shipway model promote`` needs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from typer import _click as click  # typer 0.29 vendors click: its Command, not the PyPI one
from typer.core import TyperCommand, TyperGroup

from shipway_core import vendor_telemetry

# Before any command imports MLflow: no usage reports leave this machine (shipway_core.vendor_telemetry).
vendor_telemetry.switch_off()

# noun -> (module, help). A module exposes `app: typer.Typer`.
_NOUNS = {
    "platform": ("shipway.commands.platform", "Set up and run the platform (the `local` stack by default)."),
    "model": ("shipway.commands.model", "Promote, roll back and inspect pinned model versions."),
    "env": ("shipway.commands.env", "Environment status: pins, aliases, serving versions, health."),
    "audit": ("shipway.commands.audit", "Read and verify the hash-chained audit trail."),
    "alerts": ("shipway.commands.alerts", "Alerts delivered to the local stack's receiver."),
    "logs": ("shipway.commands.logs", "Search an environment's log store for a model's log lines."),
    "monitor": ("shipway.commands.monitor", "Drift reports and ML reliability signals."),
    "new": ("shipway.commands.new", "Generate new projects from Shipway's paved-path templates."),
    "report": ("shipway.commands.report", "Delivery and reliability figures from the audit trail."),
    "incident": ("shipway.commands.incident", "Open, snapshot and close incidents (evidence for the review)."),
    "test": ("shipway.commands.test_cmd", "Non-functional tests of a candidate: load, resilience, security."),
}


class _LazyNoun(TyperCommand):
    """A noun listed in the root's help by name and help text; its module is imported when it runs.

    The root group resolves the placeholder and calls ``make_context`` on it: that is where
    the real Typer group is built, and the context it returns carries the real command.
    """

    def __init__(self, name: str, module: str, help_text: str) -> None:
        super().__init__(name=name, help=help_text, short_help=help_text, add_help_option=False)
        self.module = module
        self._real: click.Command | None = None

    def load(self) -> click.Command:
        """The noun's real click group (imports its module once)."""
        if self._real is None:
            module = importlib.import_module(self.module)
            if getattr(module, "SINGLE_COMMAND", False):
                # A noun that is one command with arguments (`shipway logs MODEL`): a group would
                # read MODEL as a subcommand name.
                self._real = typer.main.get_command(module.app)
                return self._real
            # Mounted exactly as `add_typer` mounts it (a one-command noun stays a group).
            holder = typer.Typer(add_completion=False)
            holder.add_typer(module.app, name=self.name, help=self.help)
            sub = typer.main.get_command(holder).commands[str(self.name)]  # type: ignore[attr-defined]
            self._real = sub
        return self._real

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        return self.load().make_context(info_name, args, parent=parent, **extra)


class _LazyGroup(TyperGroup):
    """The root group: the nouns of ``_NOUNS`` as lazy placeholders (a module not built yet is left out)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for noun, (module, help_text) in _NOUNS.items():
            if noun not in self.commands and importlib.util.find_spec(module) is not None:
                self.commands[noun] = _LazyNoun(noun, module, help_text)


app = typer.Typer(
    name="shipway",
    cls=_LazyGroup,
    help="Shipway: one paved path from experiment to production, on Pulumi.",
    no_args_is_help=True,
    add_completion=False,
)


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
    """Console-script entry point (``shipway``, ``python -m shipway.cli``).

    Once the command has finished, its output is flushed and the atexit handlers have run, the
    process ends with ``os._exit``: tearing down every imported module (mlflow, sklearn, scipy
    after a promote) took ~0.2-1 s more of every command for nothing. A command that leaves a
    non-daemon thread running, or an exception other than SystemExit, exits the normal way.
    """
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if not all(t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what SystemExit("message") prints
        code = 1
    atexit._run_exitfuncs()  # logging.shutdown, weakref finalizers (temporary directories)...
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`shipway ... | head`)
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
