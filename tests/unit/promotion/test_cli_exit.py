"""The `shipway` process ends with os._exit once a command is done: exit codes and output must
be exactly what the command produced (nothing lost in unflushed buffers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*argv: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # option names unabridged in the help table
    return subprocess.run([sys.executable, "-m", "shipway.cli", *argv], cwd=ROOT, text=True, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=120, check=False, env=env)


def test_help_exits_0_with_all_of_its_output_even_into_a_pipe():
    out = run("model", "rollback", "--help")
    assert out.returncode == 0, out.stderr
    assert "--full-verification" in out.stdout and "--when-alarming" in out.stdout
    assert out.stdout.rstrip().endswith("╯")  # the help box's last line was flushed


def test_bad_input_keeps_its_exit_code_and_message():
    out = run("model", "promote", "Bad!Name", "--to", "local")
    assert out.returncode == 2
    said = " ".join(out.stderr.replace("│", " ").split())
    assert "'Bad!Name' is not a valid model name" in said, out.stderr


def test_a_closed_stdout_does_not_turn_success_into_a_traceback():
    out = run("--help", stdout=subprocess.DEVNULL)
    assert out.returncode == 0
    assert "Traceback" not in out.stderr
