"""The root CLI imports a noun's module only when that noun runs (issue 23: start-up time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shipway.cli import _NOUNS

HEAVY = ("pandas", "scipy", "mlflow", "sklearn", "pulumi")


def _imported_after(args: list[str]) -> dict[str, object]:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from shipway.cli import app\n"
        f"r = CliRunner().invoke(app, {args!r}, env={{'COLUMNS': '200'}})\n"
        "mods = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m.startswith('shipway.commands.'))\n"
        "print(json.dumps({'code': r.exit_code, 'out': r.output, 'mods': mods}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_root_help_lists_every_noun_without_importing_any():
    got = _imported_after(["--help"])
    assert got["code"] == 0
    for noun, (_, help_text) in _NOUNS.items():
        assert noun in got["out"] and help_text in got["out"]
    assert got["mods"] == []


@pytest.mark.parametrize("noun", ["audit", "alerts"])
def test_a_noun_imports_its_own_module_only(noun):
    got = _imported_after([noun, "--help"])
    assert got["code"] == 0
    assert _NOUNS[noun][1] in got["out"]
    commands = [m for m in got["mods"] if m.startswith("shipway.commands.")]
    others = {mod for n, (mod, _) in _NOUNS.items() if n != noun}
    assert _NOUNS[noun][0] in commands
    assert not others & set(commands)


def test_a_one_command_noun_still_takes_its_verb():
    got = _imported_after(["new", "--help"])
    assert got["code"] == 0
    assert "model" in got["out"]
