"""`shipway env status` shows one row per pipeline component of the local stack with its health:
a live component answers its health path (probed on 127.0.0.1), a dead one says unreachable and
where, one the stack does not export says not deployed."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway.cli import app as root
from shipway.promotion import Services
from shipway.registry import RegistryError
from tests.support.threads import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
HEALTHY = {"/health", "/-/healthy", "/metrics", "/"}


class Component(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200 if self.path in HEALTHY else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def live() -> Iterator[str]:
    Component.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Component)
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Engine:
    def __init__(self, root: Path, outputs: dict[str, Any]):
        self.root, self.outputs = root, outputs

    def repo_root(self) -> Path:
        return self.root

    def stack_outputs(self, env: str) -> dict[str, Any]:
        return self.outputs


def _unreachable(uri: str) -> Any:
    raise RegistryError(f"registry at {uri} is unreachable in this test")


def test_env_status_has_a_health_row_per_pipeline_component(tmp_path: Path, live: str) -> None:
    (tmp_path / "stacks").mkdir()
    stack = tmp_path / "stacks" / "Pulumi.local.yaml"
    shutil.copy(REPO / "stacks" / "Pulumi.local.yaml", stack)
    dead = _dead_port()
    # the collector's metrics port comes from the stack file: point it at the live fake
    stack.write_text(stack.read_text().replace("collectorMetricsPort: 8888",
                                               f"collectorMetricsPort: {live.rsplit(':', 1)[1]}"))
    outputs = {"cloud": "local", "environment": "local", "trackingUri": live, "registryUri": live,
               "endpoints": {}, "observability": {"metricsUrl": live, "alertsUrl": f"http://127.0.0.1:{dead}",
                                                  "tracesUrl": live, "logStoreUrl": live}}
    services = Services(engine=Engine(tmp_path, outputs), registry_factory=_unreachable,  # type: ignore[arg-type]
                        actor="a@example.com", audit_path=tmp_path / "audit.jsonl")
    runner = CliRunner()
    result = runner.invoke(root, ["env", "status", "local", "--output", "json"], obj=services)
    assert result.exit_code == 0, result.output
    pipeline = json.loads(result.output)["envs"][0]["pipeline"]
    assert {k: v["health"] for k, v in pipeline.items() if v["health"] == "ok"} == {
        "mlflow": "ok", "prometheus": "ok", "jaeger": "ok", "otelcol": "ok", "log-store": "ok"}
    assert pipeline["alertmanager"]["health"].startswith("unreachable")
    table = runner.invoke(root, ["env", "status", "local"], obj=services)
    assert table.exit_code == 0, table.output
    for name in ("mlflow", "prometheus", "alertmanager", "jaeger", "otelcol", "log-store"):
        assert f"(pipeline: {name})" in table.output
    assert f"http://127.0.0.1:{dead}/-/healthy" in table.output


def test_pipeline_health_probes_each_component(tmp_path: Path, live: str) -> None:
    from shipway import stackfile
    from shipway.commands.env import pipeline_health
    from shipway_core.outputs import PlatformOutputs

    (tmp_path / "stacks").mkdir()
    stack = tmp_path / "stacks" / "Pulumi.local.yaml"
    shutil.copy(REPO / "stacks" / "Pulumi.local.yaml", stack)
    dead = _dead_port()
    stack.write_text(stack.read_text().replace("collectorMetricsPort: 8888",
                                               f"collectorMetricsPort: {live.rsplit(':', 1)[1]}"))
    cfg = stackfile.load_config(stack)
    outputs = PlatformOutputs.from_exports(
        {"cloud": "local", "environment": "local", "trackingUri": live, "registryUri": live,
         "observability": {"metricsUrl": live, "alertsUrl": f"http://127.0.0.1:{dead}", "tracesUrl": live}},
        stack="local")
    rows = pipeline_health(cfg, outputs)
    assert set(rows) == {"mlflow", "prometheus", "alertmanager", "jaeger", "otelcol", "log-store"}
    assert rows["mlflow"] == {"url": f"{live}/health", "health": "ok"}
    assert rows["prometheus"] == {"url": f"{live}/-/healthy", "health": "ok"}
    assert rows["otelcol"] == {"url": f"{live}/metrics", "health": "ok"}
    assert rows["alertmanager"]["url"] == f"http://127.0.0.1:{dead}/-/healthy"
    assert rows["alertmanager"]["health"].startswith("unreachable")
    assert rows["log-store"] == {"url": None, "health": "not deployed"}
    assert sorted(Component.seen) == sorted(["/health", "/-/healthy", "/", "/metrics"])
