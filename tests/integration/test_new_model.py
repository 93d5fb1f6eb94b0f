"""The paved path end to end: `shipway new model` -> train + register -> project tests -> gates + pin.

A generated project must work with the existing commands on its first run: its training
script registers a READY version carrying a signature, ``baseline_profile.json`` and
``golden.csv``; its own tests pass; its stack snippet is a valid stack config; and
`shipway model promote NAME --to local --version N` passes every gate and pins it. (Deploying
the pin with `--apply` is what tests/integration/test_local_platform.py covers; no pulumi here.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from shipway.cli import app
from shipway.promotion import Services
from shipway.registry import Registry
from shipway.stackfile import read_pins
from shipway_core.config import ModelPin, parse_stack_config, raw_from_stack_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "tumor-classifier"
FILES = [".github/workflows/ci.yml", ".gitignore", "README.md", "ci.sh", "pyproject.toml", "stack-snippet.yaml",
    "tests/test_model.py", "train.py"]


@dataclass
class Trained:
    project: Path
    tracking_uri: str
    result: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """Generate the project with the CLI and run its training script against a fresh sqlite store."""
    base = tmp_path_factory.mktemp("paved")
    project = base / NAME
    out = CliRunner().invoke(app, ["new", "model", NAME, "--dir", str(project), "--output", "json"])
    assert out.exit_code == 0, out.output
    assert sorted(json.loads(out.stdout)["files"]) == FILES
    uri = f"sqlite:///{base / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "train.py", "--tracking-uri", uri, "--artifact-root", str(base / "artifacts")],
        cwd=project, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Trained(project, uri, json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(autouse=True)
def process_tracking_uri(trained):
    """MLflow 3 resolves ``models:/m-<id>`` sources through the process-wide tracking URI (not the
    client's), so point it at this test's store and restore it afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(trained.tracking_uri)
    yield
    mlflow.set_tracking_uri(previous)


def test_training_registers_a_ready_version_with_signature_and_evidence(trained):
    assert trained.result["name"] == NAME and trained.result["version"] == 1
    registry = Registry(trained.tracking_uri, probe=False)
    info = registry.version(NAME, 1)
    assert info.status == "READY"
    assert registry.run_metrics(info.run_id)["accuracy"] >= 0.9

    import mlflow.models

    model_info = mlflow.models.get_model_info(info.source)
    golden_path = registry.download_version_file(info, "golden.csv")
    profile_path = registry.download_version_file(info, "baseline_profile.json")
    assert golden_path is not None and profile_path is not None
    golden = pd.read_csv(golden_path)
    features = [c for c in golden.columns if c != "label"]
    assert golden.columns[-1] == "label" and len(features) == 30
    assert model_info.signature.inputs.input_names() == features
    assert model_info.saved_input_example_info is not None
    profile = json.loads(profile_path.read_text())
    assert profile["format"] == 1 and set(profile["features"]) == set(features)


def test_the_generated_project_tests_pass(trained):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=trained.project,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "8 passed" in proc.stdout  # the generated project's own tests (template tests/test_model.py)


def test_the_stack_snippet_is_a_valid_stack_config(trained):
    raw = raw_from_stack_file(ROOT / "stacks" / "Pulumi.local.yaml")
    snippet = raw_from_stack_file(trained.project / "stack-snippet.yaml")
    assert set(snippet) == {"models", "gates"}
    merged = {**raw, "models": {**raw.get("models", {}), **snippet["models"]}, "gates": snippet["gates"]}
    cfg = parse_stack_config("local", merged)
    assert cfg.models[NAME] == ModelPin(name=NAME, version=1, instances=1)
    assert dict(cfg.gates.min_metrics) == {"accuracy": 0.9}
    assert (cfg.gates.max_regression, cfg.gates.max_psi) == (0.02, 0.25)


class _Engine:
    """Stands in for the Pulumi engine: a promotion without --apply only needs the repo root."""

    def __init__(self, root: Path):
        self.root = root

    def repo_root(self) -> Path:
        return self.root

    def stack_outputs(self, env: str) -> dict[str, Any]:
        raise AssertionError(f"no stack outputs are needed to pin (asked for {env!r})")

    def up(self, env: str, message: str) -> dict[str, Any]:
        raise AssertionError("promotion without --apply must not run pulumi up")


def test_promote_to_local_passes_every_gate_and_pins_the_version(trained, tmp_path):
    (tmp_path / "stacks").mkdir()
    stack = tmp_path / "stacks" / "Pulumi.local.yaml"
    shutil.copy(ROOT / "stacks" / "Pulumi.local.yaml", stack)
    services = Services(engine=_Engine(tmp_path), tracking_uri=trained.tracking_uri, actor="paved-path-test",
                        audit_path=tmp_path / "audit.jsonl")
    version = str(trained.result["version"])
    out = CliRunner().invoke(
        app, ["model", "promote", NAME, "--to", "local", "--version", version, "--allow-dirty",
              "--reason", "first version", "--output", "json"],
        obj=services,
    )
    assert out.exit_code == 0, out.output
    outcome = json.loads(out.stdout)
    assert outcome["status"] == "pinned"
    assert {g: r["passed"] for g, r in outcome["gates"]["gates"].items()} == {
        "metric-thresholds": True, "no-regression": True, "signature-compatibility": True,
        "data-consistency": True,
    }
    assert read_pins(stack)[NAME] == int(version)
