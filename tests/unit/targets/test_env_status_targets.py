"""`shipway env status` on every cloud target's real export shape never crashes.

The exports come from running ``infra`` (the real program) for each committed example stack under
recording mocks (tests/unit/test_conformance.py's helpers), so they have exactly the keys
``components/contract.py`` gives each target. No platform is reachable from here: AWS has no
credentials (DescribeEndpoint fails), Azure gets no token, Kubernetes has no API server; each must
show up as a cell saying why, with the pinned version, never as a traceback. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shipway.cli import app as root
from shipway.promotion import Services
from shipway.targets import TargetError
from tests.unit.test_conformance import option_set_run


class Engine:
    def __init__(self, root: Path, outputs: dict[str, Any]):
        self.root, self.outputs = root, outputs

    def repo_root(self) -> Path:
        return self.root

    def stack_outputs(self, env: str) -> dict[str, Any]:
        return self.outputs

    def up(self, env: str, message: str) -> dict[str, Any]:  # pragma: no cover - status never deploys
        raise AssertionError("env status must not deploy")


def _no_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in {"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                       "AWS_CONFIG_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(var, value)
    try:
        azure = importlib.import_module("shipway.targets.azure")
    except ModuleNotFoundError:
        return

    def no_token(scope: str) -> str:
        raise TargetError(f"cannot get an Azure token for {scope}: no credentials in this test")

    monkeypatch.setattr(azure, "get_token", no_token)  # DefaultAzureCredential would try the network


@pytest.mark.parametrize("target", ["aws", "azure", "kubernetes"])
def test_env_status_reads_each_targets_exports_without_crashing(target: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, raw, exports, _ = option_set_run(target, "committed")
    env = raw["environment"]
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / f"Pulumi.{env}.yaml").write_text(
        yaml.safe_dump({"config": {f"shipway:{k}": v for k, v in raw.items()}}))
    (tmp_path / "Pulumi.yaml").write_text("name: shipway\n")
    _no_cloud_credentials(monkeypatch)
    services = Services(engine=Engine(tmp_path, exports), registry_factory=_unreachable, actor="a@example.com")
    result = CliRunner().invoke(root, ["env", "status", env, "--output", "json"], obj=services)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["envs"]
    assert row["deployed"] is True and row["error"] is None
    assert {m["model"]: m["pinned"] for m in row["models"]} == {m: p["version"] for m, p in raw["models"].items()}
    for model in row["models"]:
        assert model["health"] == "unknown" and model["serving_version"] is None
        assert model["detail"], model  # says why the live state is unknown


def _unreachable(uri: str) -> Any:
    from shipway.registry import RegistryError

    raise RegistryError(f"MLflow registry at {uri} is unreachable (test)")
