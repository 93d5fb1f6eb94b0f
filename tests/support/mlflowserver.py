"""A real MLflow tracking server on 127.0.0.1 for tests (sqlite store, file artifacts), stopped by PID."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.support.kubecluster import free_port, stop_process


@contextlib.contextmanager
def mlflow_server(root: Path, timeout: float = 120) -> Iterator[str]:
    """Yield the URI of an MLflow server whose data lives under ``root``."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = root / "mlflow.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--default-artifact-root", (root / "artifacts").as_uri(), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if requests.get(f"{uri}/health", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"MLflow server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield uri
        finally:
            stop_process(proc, grace=30)


def register_stub_versions(uri: str, model: str, count: int, root: Path) -> None:
    """Register ``count`` READY versions of ``model`` whose artifact is an empty MLmodel (for tests
    of pins and aliases, which never load the model)."""
    from mlflow import MlflowClient

    model_dir = root / "stub-model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(client.create_experiment(f"stub-{model}"))
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(model)
    for _ in range(count):
        client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
