"""The serving image, built with podman and run the way each platform runs it.

Builds (or reuses, by input hash) the image with ``scripts/containers.sh``, then starts it with
SageMaker's, Azure ML's and Kubernetes' environment and mounts and calls the routes each platform
calls, on 127.0.0.1 only:

- SageMaker: model files under ``/opt/ml/model`` (read-only), the API key fetched by ARN from
  Secrets Manager (moto in server mode on 127.0.0.1, reached through slirp4netns' host loopback),
  ``GET /ping`` + ``POST /invocations`` on 8080, the ``drift_window`` log line the CloudWatch
  metric filter reads, a clean exit on SIGTERM without ``--init`` (PID 1, as on the platforms).
- Azure ML: the registered model mounted inside ``AZUREML_MODEL_DIR``, the liveness, readiness
  and scoring routes of the environment's ``inference_config``.
- Kubernetes: the model from a real MLflow registry, the API key as a 0644 Secret-volume file,
  ``SHIPWAY_PORT``, the startup/readiness probes, SIGTERM drain.

Every container and the moto and MLflow servers are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipway_core import contract as c

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "containers" / "containers.conf"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
API_KEY = uuid.uuid4().hex
# slirp4netns with allow_host_loopback maps this address to the host's 127.0.0.1.
HOST_LOOPBACK = "10.0.2.2"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 90, status: int = 200) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last!r})")


@dataclass
class Container:
    """One running container and the host port its 8080 is published on."""

    id: str
    url: str

    def logs(self) -> list[dict[str, Any]]:
        out = podman("logs", self.id).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def stop(self) -> tuple[int, float]:
        """SIGTERM (podman stop), returns (exit code, seconds to exit)."""
        started = time.monotonic()
        podman("stop", "--time", "30", self.id)
        took = time.monotonic() - started
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.id).stdout.strip())
        return code, took


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed; run scripts/containers.sh (the project's setup calls it)")
    done = subprocess.run([str(ROOT / "scripts" / "containers.sh")], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def started() -> Iterator[list[str]]:
    """Ids of every container a test starts; all removed at the end, even after a failure."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        podman("rm", "--force", "--time", "5", cid, check=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sklearn model directory with its baseline profile: what a release packages."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipway.drift.profile import build_profile, save_profile

    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = FEATURES
    model = LogisticRegression(max_iter=300).fit(x, y)
    path = tmp_path_factory.mktemp("package") / "model"
    mlflow.sklearn.save_model(model, str(path), input_example=x.head(2))
    save_profile(build_profile(x), path / "baseline_profile.json")
    os.chmod(path.parent, 0o755)  # noqa: S103 - the container's non-root user must read the mount
    return path


@pytest.fixture(scope="module")
def expected(model_dir: Path) -> list[int]:
    import mlflow.sklearn
    import pandas as pd

    model = mlflow.sklearn.load_model(str(model_dir))
    return [int(v) for v in model.predict(pd.DataFrame(ROWS, columns=FEATURES))]


def run(image: str, started: list[str], env: dict[str, str], *extra: str, network: str | None = None,
        port: int | None = None) -> Container:
    """Start the image detached the way a platform would: its entrypoint, env and mounts, no --init."""
    port = port or free_port()
    net = ["--network", network] if network else [
        "--network", "slirp4netns:allow_host_loopback=true", "-p", f"127.0.0.1:{port}:{c.SERVING_PORT}"]
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    # No healthcheck timer: there is no systemd here to run it (the HEALTHCHECK is checked below).
    cid = podman("run", "--detach", "--no-healthcheck", *net, *env_args, *extra, image).stdout.strip()
    started.append(cid)
    return Container(cid, f"http://127.0.0.1:{port}")


def score(container: Container, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{container.url}{c.INVOCATIONS}", headers=headers, timeout=10,
                      json={"dataframe_split": {"columns": FEATURES, "data": ROWS}})


def pin_env(platform: str) -> dict[str, str]:
    return {c.PLATFORM: platform, c.MODEL_NAME: "iris", c.MODEL_VERSION: "1", c.ENVIRONMENT: "test"}


def test_image_runs_as_a_non_root_user_with_a_healthcheck(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "shipway.serving.platform"]
    assert config["Cmd"] == ["serve"]
    assert f"{c.SERVING_PORT}/tcp" in config["ExposedPorts"]
    assert c.PING in " ".join(inspected["Healthcheck"]["Test"])
    # Compilers stay in the build stage.
    found = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                   "command -v gcc cc pip || true").stdout.strip()
    assert found == ""


@pytest.fixture(scope="module")
def moto_secret() -> Iterator[tuple[str, int]]:
    """A Secrets Manager secret holding the API key, in moto's server on 127.0.0.1."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=f"http://127.0.0.1:{port}",
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106
        arn = client.create_secret(Name="shipway-test-endpoint-api-key", SecretString=API_KEY)["ARN"]
        yield arn, port
    finally:
        server.stop()


def test_sagemaker_contract(image: str, started: list[str], model_dir: Path, expected: list[int],
                            moto_secret: tuple[str, int]) -> None:
    arn, moto_port = moto_secret
    env = {**pin_env(c.SAGEMAKER), c.API_KEY_SECRET_ARN: arn,
           "AWS_ENDPOINT_URL": f"http://{HOST_LOOPBACK}:{moto_port}",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    box = run(image, started, env, "-v", f"{model_dir}:{c.SAGEMAKER_MODEL_DIR}:ro")
    # The model is loaded before the server listens: the first /ping that answers means ready.
    wait_for(f"{box.url}{c.PING}")
    assert score(box).status_code == 401
    ok = score(box, API_KEY)
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == expected
    assert podman("exec", box.id, "id", "-u").stdout.strip() == "10001"
    # The key was fetched by ARN into a private file, never into the environment.
    assert API_KEY not in podman("exec", box.id, "env").stdout
    # A scrape publishes the pending drift window; its log line is what the metric filter reads.
    httpx.get(f"{box.url}/metrics", timeout=5)
    code, took = box.stop()
    assert code == 0
    lines = box.logs()
    drift = [line for line in lines if line.get("event") == c.DRIFT_LOG_EVENT]
    assert drift, lines[-5:]
    assert set(c.DRIFT_LOG_FIELDS) <= set(drift[-1])
    assert isinstance(drift[-1][c.DRIFT_LOG_VALUE_FIELD], float)
    assert drift[-1]["samples"] >= len(ROWS)
    assert lines[-1]["event"] == "shutdown"
    print(f"\nsagemaker: SIGTERM to exit {took:.1f}s")


def test_azureml_contract(image: str, started: list[str], model_dir: Path, expected: list[int]) -> None:
    # Azure ML mounts the registered folder inside the directory AZUREML_MODEL_DIR names.
    mount = "/var/azureml-app/azureml-models/iris/1"
    env = {**pin_env(c.AZUREML), c.AZUREML_MODEL_DIR: mount}
    box = run(image, started, env, "-v", f"{model_dir}:{mount}/model:ro")
    contract = c.CONTRACTS[c.AZUREML]
    wait_for(f"{box.url}{contract.liveness.path}")
    assert wait_for(f"{box.url}{contract.readiness.path}").json() == {"status": "ready"}
    ok = score(box)  # Azure authenticates callers at the endpoint; the app needs no key here
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == expected
    code, _ = box.stop()
    assert code == 0


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[tuple[str, Path]]:
    """A real MLflow server on 127.0.0.1 with iris v1 registered (file artifacts); (URL, its root)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    os.chmod(root, 0o755)  # noqa: S103 - read by the container's non-root user
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (root / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root",
         (root / "artifacts").as_uri(), "--no-serve-artifacts", "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        wait_for(f"{uri}/health", timeout=120)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment("image-test")
        run_ = client.create_run(experiment)
        client.log_artifacts(run_.info.run_id, str(model_dir), "model")
        client.set_terminated(run_.info.run_id)
        client.create_registered_model("iris")
        client.create_model_version("iris", f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id)
        yield uri, root
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_kubernetes_contract(image: str, started: list[str], registry: tuple[str, Path], expected: list[int],
                             tmp_path: Path) -> None:
    from components.kubernetes.endpoint import API_KEY_FILE

    tracking, registry_root = registry

    key_dir = tmp_path / "secret"
    key_dir.mkdir()
    (key_dir / "api-key").write_text(API_KEY)
    # Secret volumes default to 0644; the app must accept that (it logs a warning).
    os.chmod(key_dir / "api-key", 0o644)
    os.chmod(key_dir, 0o755)  # noqa: S103 - as a Secret volume is
    port = free_port()
    env = {**pin_env(c.KUBERNETES), c.TRACKING_URI: tracking, c.API_KEY_FILE: API_KEY_FILE,
           c.PORT: str(port), c.PIN_FILE: "/tmp/pin.json"}  # noqa: S108 - the pod's emptyDir
    # The registry's artifacts are file paths: the container sees them at the same path, read-only.
    box = run(image, started, env, "-v", f"{key_dir}:{Path(API_KEY_FILE).parent}:ro",
              "-v", f"{registry_root}:{registry_root}:ro", network="host", port=port)
    contract = c.CONTRACTS[c.KUBERNETES]
    wait_for(f"{box.url}{contract.liveness.path}")
    wait_for(f"{box.url}{contract.readiness.path}", timeout=120)
    assert score(box).status_code == 401
    ok = score(box, API_KEY)
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == expected
    code, took = box.stop()
    assert code == 0
    events = [line.get("event") for line in box.logs()]
    assert "api_key_file_permissions" in events
    assert events[-1] == "shutdown"
    print(f"\nkubernetes: SIGTERM to exit {took:.1f}s")


def test_missing_platform_variable_fails_start_naming_it(image: str, started: list[str]) -> None:
    env = pin_env(c.SAGEMAKER)
    env[c.PLATFORM] = "lambda"
    box = run(image, started, env)
    code = int(podman("wait", box.id, timeout=60).stdout.strip())
    assert code == 2
    (line,) = [entry for entry in box.logs() if entry.get("event") == "startup_failed"]
    assert line["error"] == (
        "SHIPWAY_PLATFORM: 'lambda' is not a platform the serving image knows; "
        "set it to one of sagemaker, azureml, kubernetes"
    )


@pytest.fixture(scope="module")
def mlflow_image() -> str:
    done = subprocess.run([str(ROOT / "scripts" / "containers.sh"), "--mlflow"], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_mlflow_image_has_the_postgresql_driver_and_artifact_store_clients(mlflow_image: str) -> None:
    # Connecting to a closed port must fail in the driver (connection refused), not on a missing
    # module: that is the difference between this image and the slim upstream one.
    probe = (
        "import boto3, azure.storage.blob, azure.identity, prometheus_flask_exporter, sqlalchemy, os\n"
        "try:\n"
        "    sqlalchemy.create_engine('postgresql://mlflow@127.0.0.1:1/mlflow').connect()\n"
        "except sqlalchemy.exc.OperationalError as exc:\n"
        "    print('driver-ok' if 'refused' in str(exc) else exc)\n"
        "print(os.getuid())\n"
    )
    out = podman("run", "--rm", "--network", "none", mlflow_image, "python", "-c", probe).stdout.split()
    assert out == ["driver-ok", "10001"]


def test_mlflow_image_serves_the_registry(mlflow_image: str, started: list[str]) -> None:
    port = free_port()
    cid = podman("run", "--detach", "--no-healthcheck", "--network", "host", mlflow_image,
                 "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--workers", "1").stdout.strip()
    started.append(cid)
    wait_for(f"http://127.0.0.1:{port}/health", timeout=120)
    res = httpx.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search", timeout=10)
    assert res.status_code == 200, res.text
