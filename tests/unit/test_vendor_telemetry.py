"""MLflow's usage telemetry is off wherever Shipway runs MLflow.

MLflow 3 reports usage to its vendor from client and server processes; Shipway's processes send
traffic only where the stack points. The CLI switches it off before any command imports MLflow
(keeping a value the user set), the serving image and the MLflow image carry the switch, and every
local platform process gets it from ``child_env`` (tests/unit/local/test_supervisor.py); the
Kubernetes and AWS MLflow containers are checked in their component tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# MLflow decides at call time from the environment: its verdict before and after the CLI module loads.
PROBE = ("import os, mlflow.telemetry.utils as u; before = u.is_telemetry_disabled(); import shipway.cli; "
         "print(before, os.environ.get('MLFLOW_DISABLE_TELEMETRY'), u.is_telemetry_disabled())")
KEEPS = "import os, shipway.cli; print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'))"
OURS = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST")


def _run(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()


def test_the_cli_switches_mlflow_telemetry_off_before_any_command_imports_it() -> None:
    before, value, after = _run(PROBE, {}).split()
    if before == "True":
        pytest.skip("this machine looks like a CI runner to MLflow, which then stays quiet on its own")
    assert (before, value, after) == ("False", "true", "True")  # MLflow would report usage; the CLI stops it


def test_the_cli_keeps_a_value_the_user_set() -> None:
    assert _run(KEEPS, {"MLFLOW_DISABLE_TELEMETRY": "false"}) == "false"


@pytest.mark.parametrize("image", ["serving", "mlflow"])
def test_both_images_carry_the_switch(image: str) -> None:
    text = (ROOT / "containers" / f"{image}.Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(
        line for line in final_stage.replace("\\\n", " ").splitlines() if line.startswith("ENV "))))
    assert (env.get("MLFLOW_DISABLE_TELEMETRY"), env.get("DO_NOT_TRACK")) == ("true", "true"), env
