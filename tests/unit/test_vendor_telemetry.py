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
PROBE = ("import os, shipway.cli, mlflow.telemetry.utils as u; "
         "print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), u.is_telemetry_disabled())")


def _run(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()


def test_mlflow_reports_usage_unless_told_not_to() -> None:
    """The premise: without the switch, MLflow in a plain process would report usage."""
    done = subprocess.run(
        [sys.executable, "-c", "import mlflow.telemetry.utils as u; print(u.is_telemetry_disabled())"],
        env={k: v for k, v in os.environ.items()
             if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST")},
        capture_output=True, text=True, check=True, timeout=60)
    if done.stdout.strip() == "True":
        pytest.skip("this machine looks like a CI runner to MLflow, which then stays quiet on its own")
    assert done.stdout.strip() == "False"


def test_the_cli_switches_mlflow_telemetry_off_before_any_command_imports_it() -> None:
    assert _run({}) == "true True"


def test_the_cli_keeps_a_value_the_user_set() -> None:
    assert _run({"MLFLOW_DISABLE_TELEMETRY": "false"}).startswith("false ")


@pytest.mark.parametrize("image", ["serving", "mlflow"])
def test_both_images_carry_the_switch(image: str) -> None:
    text = (ROOT / "containers" / f"{image}.Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(
        line for line in final_stage.replace("\\\n", " ").splitlines() if line.startswith("ENV "))))
    assert (env.get("MLFLOW_DISABLE_TELEMETRY"), env.get("DO_NOT_TRACK")) == ("true", "true"), env
