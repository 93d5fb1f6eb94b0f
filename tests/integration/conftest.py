"""A throwaway copy of the Shipway project for integration tests.

Each test session gets its own project directory (Pulumi.yaml + infra entry point + one
stack file), file backend, data directory and ports, so tests never touch the developer's
`local` stack, its state or its processes. The program code itself is the installed
project (editable install), exactly what `make up` runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipway import engine

ROOT = Path(__file__).resolve().parents[2]


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral (outgoing-connection) range."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports on 127.0.0.1, below the kernel's ephemeral
    range: a port in that range can be taken by any outgoing connection (a Go module download, a
    pip install) between this check and the process binding it — seen on a cold CI run."""
    top = _ephemeral_low() - size
    # Start somewhere different per process so concurrent test runs rarely race for a block.
    start = 20000 + (os.getpid() * 97) % max(top - 20000, 97)
    for base in [*range(start, top, 97), *range(20000, start, 97)]:
        ok = True
        for port in range(base, base + size):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block on 127.0.0.1")


@dataclass
class Project:
    """A throwaway project + stack driven with the real pulumi CLI."""

    dir: Path
    stack: str
    env: dict[str, str]
    data_dir: Path
    ports: dict[str, int]
    api_key: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def stack_file(self) -> Path:
        return self.dir / "stacks" / f"Pulumi.{self.stack}.yaml"

    def write_config(self, **changes: Any) -> None:
        """Rewrite the plain (non-secret) part of the stack file."""
        self.config.update(changes)
        doc = yaml.safe_load(self.stack_file.read_text()) if self.stack_file.exists() else {}
        doc = doc or {}
        conf = {k: v for k, v in (doc.get("config") or {}).items() if isinstance(v, dict) and "secure" in v}
        conf.update({f"shipway:{k}": v for k, v in self.config.items()})
        doc["config"] = conf
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def pin(self, model: str, version: int) -> None:
        models = dict(self.config.get("models", {}))
        models[model] = {"version": version}
        self.write_config(models=models)

    def pulumi(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(engine.pulumi_binary(ROOT)), *args, "--stack", self.stack, "--non-interactive"],
                             cwd=self.dir, env=self.env, text=True, capture_output=True, timeout=timeout,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "output", "--json").stdout)

    @property
    def tracking_store(self) -> tuple[str, str]:
        mlflow_dir = self.data_dir / self.stack / "mlflow"
        return f"sqlite:///{mlflow_dir / 'mlflow.db'}", f"file://{mlflow_dir / 'artifacts'}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['tracking']}"


def make_project(tmp: Path, stack: str = "t-local") -> Project:
    project = tmp / "project"
    (project / "infra").mkdir(parents=True)
    (project / "stacks").mkdir()
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: shipway
        main: infra/
        stackConfigDir: stacks
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {ROOT / '.venv'}
        """))
    shutil.copy(ROOT / "infra" / "__main__.py", project / "infra" / "__main__.py")
    base = free_port_block(18)  # ... + the delivery exporter on alertSink + 1
    ports = {"tracking": base, "endpoints": base + 2, "prometheus": base + 6, "alertmanager": base + 7,
             "jaegerOtlp": base + 8, "jaegerQuery": base + 9, "alertSink": base + 11,
             "otlpGrpc": base + 13, "otlpHttp": base + 14, "collectorMetrics": base + 15, "logStore": base + 16,
             "jaegerMetrics": base + 17}
    env = engine.pulumi_env(stack, ROOT)
    (tmp / "state").mkdir()
    env["PULUMI_BACKEND_URL"] = f"file://{tmp / 'state'}"
    data_dir = tmp / "data"
    proj = Project(dir=project, stack=stack, env=env, data_dir=data_dir, ports=ports,
                   api_key=secrets.token_hex(24))
    proj.write_config(
        cloud="local", environment="local", owner="ml-platform", costCenter="cc-test",
        dataClassification="internal", models={},
        local={"trackingPort": ports["tracking"], "endpointBasePort": ports["endpoints"],
               "prometheusPort": ports["prometheus"], "alertmanagerPort": ports["alertmanager"],
               "jaegerOtlpPort": ports["jaegerOtlp"], "jaegerQueryPort": ports["jaegerQuery"],
               "alertSinkPort": ports["alertSink"], "otlpGrpcPort": ports["otlpGrpc"],
               "otlpHttpPort": ports["otlpHttp"], "collectorMetricsPort": ports["collectorMetrics"],
               "logStorePort": ports["logStore"], "jaegerMetricsPort": ports["jaegerMetrics"],
               "dataDir": str(data_dir)},
        slo={"availability": 0.995, "latencyP99Ms": 250, "driftPsi": 0.2},
    )
    out = subprocess.run([str(engine.pulumi_binary(ROOT)), "stack", "init", stack, "--non-interactive"],
                         cwd=project, env=env, text=True, capture_output=True, check=False)
    assert out.returncode == 0, out.stderr
    proj.pulumi("config", "set", "--secret", "shipway:endpointApiKey", proj.api_key)
    return proj


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    proj = make_project(tmp_path_factory.mktemp("shipway"))
    try:
        yield proj
    finally:
        # Leave no process behind even when a test failed half-way.
        proj.pulumi("destroy", "--yes", check=False)
