"""One contract, both sides: what the components write into SageMaker, Azure ML and Kubernetes
resources is exactly what the serving image's start-up reads (``shipway_core.contract``).

A component that sets a variable, route, port or log field the app does not implement fails
here; so does a variable in the contract that the app's start-up ignores (each one is changed
and must change what the app does, or be refused with an error naming it).
"""

from __future__ import annotations

import dataclasses
import http.server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from shipway.serving.app import ROUTES
from shipway.serving.platform import PlatformError, drift_window_fields, startup
from shipway_core import contract as c
from tests.support.recording import FAKE_ACCOUNT, Recording, record
from tests.support.threads import serve_in_thread

SECRET_ARN = f"arn:aws:secretsmanager:eu-west-1:{FAKE_ACCOUNT}:secret:shipway/prod/endpoint-api-key-AbCdEf"


# ----------------------------------------------------------------------------- component side


def _aws() -> Recording:
    from components.aws.endpoint import InferenceEndpoint
    from components.common import InferenceEndpointArgs
    from tests.unit.aws.support import KEY_ARN, SETTINGS, TAGS, outputs

    args = InferenceEndpointArgs(environment="prod", model_name="churn", model_version=3,
                                 tracking_uri="http://mlflow:5000", tags=TAGS, instance_count=2,
                                 otlp_endpoint="https://collector:4318")
    return record(lambda: InferenceEndpoint("churn", args, SETTINGS, kms_key_arn=KEY_ARN, artifact_bucket="b",
                                            api_key_secret_arn=SECRET_ARN), stack="prod", outputs=outputs)


def _azure() -> Recording:
    from components.azure import AzureTarget, InferenceEndpoint, SecretRefs, WorkspaceRef
    from components.common import InferenceEndpointArgs
    from tests.unit.azure.provider import TAGS, record_azure

    args = InferenceEndpointArgs(environment="prod", model_name="iris", model_version=3,
                                 tracking_uri="azureml://tracking", tags=TAGS, instance_count=2,
                                 otlp_endpoint="https://collector:4318")
    refs = SecretRefs(ids={"endpointApiKey": "id"}, uris={"endpointApiKey": "https://kv/secrets/endpointApiKey"})
    from shipway_core.config import AzureSettings

    target = AzureTarget("rg", "westeurope", AzureSettings(registry_name="shipway-models"))
    return record_azure(lambda: InferenceEndpoint("iris", args, target,
                                                  WorkspaceRef("ws", "ws-id", "st-id", "acr-id", "registry-id"), refs))


def _kubernetes() -> Recording:
    from components.common import InferenceEndpointArgs
    from components.kubernetes.endpoint import InferenceEndpoint
    from shipway_core.config import KubernetesSettings
    from tests.unit.aws.support import TAGS

    args = InferenceEndpointArgs(environment="prod", model_name="churn", model_version=7,
                                 tracking_uri="http://mlflow:5000", tags=TAGS, instance_count=2,
                                 api_key=pulumi.Output.secret("k-123"), otlp_endpoint="http://collector:4318")
    return record(lambda: InferenceEndpoint("serve-churn", args, KubernetesSettings()), stack="prod")


@pytest.fixture(scope="module")
def sagemaker_model() -> dict[str, Any]:
    return _aws().one("aws:sagemaker/model:Model").inputs["primaryContainer"]


@pytest.fixture(scope="module")
def azure_env() -> dict[str, Any]:
    rec = _azure()
    return rec.one("azure-native:machinelearningservices:OnlineDeployment").inputs["properties"][
        "environmentVariables"]


@pytest.fixture(scope="module")
def k8s_container() -> dict[str, Any]:
    deployment = _kubernetes().one("kubernetes:apps/v1:Deployment").inputs
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _check_env(platform: str, names: set[str]) -> None:
    contract = c.CONTRACTS[platform]
    assert names - contract.env == set(), f"{platform}: set by the component, not read by the app"
    assert set(contract.required_env) - names == set(), f"{platform}: required by the app, not set"
    assert contract.model_dir_env not in names  # the platform sets it, not us


def test_sagemaker_model_environment_is_the_contract(sagemaker_model: dict[str, Any]) -> None:
    env = sagemaker_model["environment"]
    _check_env(c.SAGEMAKER, set(env))
    assert env[c.PLATFORM] == c.SAGEMAKER
    assert env[c.API_KEY_SECRET_ARN] == SECRET_ARN


def test_sagemaker_drift_metric_filter_reads_the_field_the_app_logs() -> None:
    from components.aws.endpoint import DRIFT_LOG_PATTERN, DRIFT_LOG_VALUE

    assert f'{{ $.event = "{c.DRIFT_LOG_EVENT}" }}' == DRIFT_LOG_PATTERN
    field = DRIFT_LOG_VALUE.removeprefix("$.")
    model = type("M", (), {"name": "churn", "version": 3})()
    line = {"event": c.DRIFT_LOG_EVENT, **drift_window_fields({"a": 0.1, "b": 0.31}, 250.0, model)}  # type: ignore[arg-type]
    assert set(line) == set(c.DRIFT_LOG_FIELDS)
    assert line[field] == 0.31  # the largest feature PSI: what the alarm compares to drift_psi


def test_azureml_deployment_environment_is_the_contract(azure_env: dict[str, Any]) -> None:
    _check_env(c.AZUREML, set(azure_env))
    assert azure_env[c.PLATFORM] == c.AZUREML


def test_azureml_inference_config_routes_are_served() -> None:
    config = c.azureml_inference_config()
    assert {route["path"] for route in config.values()} <= ROUTES
    assert {route["port"] for route in config.values()} == {c.SERVING_PORT}


def test_kubernetes_container_is_the_contract(k8s_container: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in k8s_container["env"]}
    _check_env(c.KUBERNETES, set(env))
    assert env[c.PLATFORM] == c.KUBERNETES
    contract = c.CONTRACTS[c.KUBERNETES]
    assert "command" not in k8s_container  # the image's own entrypoint
    assert k8s_container["ports"][0]["containerPort"] == c.SERVING_PORT
    assert k8s_container["livenessProbe"]["httpGet"]["path"] == contract.liveness.path
    assert k8s_container["startupProbe"]["httpGet"]["path"] == contract.liveness.path
    assert k8s_container["readinessProbe"]["httpGet"]["path"] == contract.readiness.path
    mounts = {m["mountPath"] for m in k8s_container["volumeMounts"]}
    assert str(Path(env[c.API_KEY_FILE]).parent) in mounts
    assert str(Path(env[c.PIN_FILE]).parent) in mounts


@pytest.mark.parametrize("platform", c.PLATFORMS)
def test_every_route_a_platform_calls_is_served(platform: str) -> None:
    assert c.CONTRACTS[platform].routes <= ROUTES


def test_unknown_platform_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError) as err:
        c.contract("lambda")
    assert str(err.value) == ("SHIPWAY_PLATFORM: 'lambda' is not a platform the serving image knows; "
                              "set it to one of sagemaker, azureml, kubernetes")


# ----------------------------------------------------------------------------- app side


@pytest.fixture
def model_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An MLflow model directory; SageMaker's fixed /opt/ml/model pointed at it for the test."""
    root = tmp_path / "opt-ml-model"
    root.mkdir()
    (root / "MLmodel").write_text("flavors: {}\n")
    monkeypatch.setitem(c.CONTRACTS, c.SAGEMAKER,
                        dataclasses.replace(c.CONTRACTS[c.SAGEMAKER], model_dir=str(root)))
    return root


def base_env(platform: str, model_root: Path) -> dict[str, str]:
    env = {c.PLATFORM: platform, c.MODEL_NAME: "churn", c.MODEL_VERSION: "3", c.ENVIRONMENT: "prod"}
    if platform == c.AZUREML:
        env[c.AZUREML_MODEL_DIR] = str(model_root.parent)  # the folder is mounted one level down
    if platform == c.KUBERNETES:
        env[c.TRACKING_URI] = "http://mlflow:5000"
    return env


def observed(env: dict[str, str], workdir: Path) -> Any:
    """Everything start-up decides from the environment, or the error it refuses with."""
    try:
        start = startup(env, workdir)
    except PlatformError as exc:
        return ("error", str(exc))
    return (start, Path(start.config.pin_file).read_text())


# Variables whose reading needs a secret store; covered by the tests below.
SECRET_VARS = {c.API_KEY_SECRET_ARN, c.API_KEY_SECRET_URI, c.IDENTITY_CLIENT_ID}
CHANGED = {
    c.PLATFORM: "lambda", c.MODEL_NAME: "other", c.MODEL_VERSION: "4", c.ENVIRONMENT: "staging",
    c.TRACKING_URI: "http://elsewhere:5000", c.MODEL_URI: "models:/churn/9", c.PORT: "9090",
    c.OTLP_ENDPOINT: "http://collector:4318", c.API_KEY_FILE: "/var/run/secrets/shipway/api-key",
    c.AZUREML_MODEL_DIR: "/nowhere",
}


@pytest.mark.parametrize(("platform", "name"), [
    (p, n) for p in c.PLATFORMS for n in sorted(c.CONTRACTS[p].env - SECRET_VARS)
])
def test_the_app_reads_every_variable_of_the_contract(platform: str, name: str, model_root: Path,
                                                      tmp_path: Path) -> None:
    env = base_env(platform, model_root)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = observed(env, tmp_path / "a")
    changed = {**env, name: CHANGED.get(name, str(tmp_path / "pin-elsewhere.json"))}
    after = observed(changed, tmp_path / "b")
    assert before[0] != "error", before
    if after[0] == "error":
        assert after[1].startswith(f"{name}: "), after  # refused, naming the variable
    else:
        assert _comparable(before) != _comparable(after), f"{name} changes nothing the app does"


def _comparable(result: Any) -> Any:
    start, pin = result
    config = dataclasses.replace(start.config, pin_file=Path(start.config.pin_file).name)
    return (start.platform, config, start.pin, start.model_dir, pin)


def test_model_dir_missing_is_an_error_naming_where(tmp_path: Path) -> None:
    env = {c.PLATFORM: c.AZUREML, c.MODEL_NAME: "churn", c.MODEL_VERSION: "3", c.ENVIRONMENT: "prod",
           c.AZUREML_MODEL_DIR: str(tmp_path)}
    with pytest.raises(PlatformError) as err:
        startup(env, tmp_path)
    assert str(err.value) == (
        f"AZUREML_MODEL_DIR: {str(tmp_path)!r} holds no MLmodel file; the platform must provide exactly "
        "one MLflow model directory there (the pinned version's package)")


def test_sagemaker_key_is_fetched_by_arn_into_a_private_file(model_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="shipway/prod/endpoint-api-key", SecretString="k-777\n")["ARN"]
        start = startup({**base_env(c.SAGEMAKER, model_root), c.API_KEY_SECRET_ARN: arn}, tmp_path)
    key_file = Path(start.config.api_key_file or "")
    assert key_file.read_bytes() == b"k-777"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_sagemaker_unreadable_secret_fails_start_naming_the_variable(model_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws(), pytest.raises(PlatformError) as err:
        startup({**base_env(c.SAGEMAKER, model_root), c.API_KEY_SECRET_ARN: SECRET_ARN}, tmp_path)
    assert str(err.value).startswith(f"SHIPWAY_API_KEY_SECRET_ARN: reading {SECRET_ARN} failed (")


@pytest.fixture
def azure_identity_and_vault() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Azure ML's token endpoint and a Key Vault on 127.0.0.1 (the same protocol, plain HTTP)."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's handler name
            from urllib.parse import parse_qs, urlsplit

            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            seen.append({"path": parts.path, **query, **{k.lower(): v for k, v in self.headers.items()}})
            if parts.path == "/msi/token" and self.headers.get("secret") == "msi-secret" \
                    and query.get("clientid") == "client-1":
                body = b'{"access_token": "tok-1", "expires_on": "1999999999"}'
            elif parts.path == "/secrets/endpointApiKey" and self.headers.get("Authorization") == "Bearer tok-1":
                body = b'{"value": "k-azure"}'
            else:
                self.send_response(403)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_azureml_key_is_read_from_key_vault_with_the_deployment_identity(
        model_root: Path, tmp_path: Path, azure_identity_and_vault: tuple[str, list[dict[str, str]]]) -> None:
    base, seen = azure_identity_and_vault
    env = {**base_env(c.AZUREML, model_root), c.API_KEY_SECRET_URI: f"{base}/secrets/endpointApiKey",
           c.IDENTITY_CLIENT_ID: "client-1", c.AZUREML_MSI_ENDPOINT: f"{base}/msi/token",
           c.AZUREML_MSI_SECRET: "msi-secret"}
    start = startup(env, tmp_path)
    assert Path(start.config.api_key_file or "").read_bytes() == b"k-azure"
    token_call, vault_call = seen
    assert token_call["resource"] == "https://vault.azure.net"
    assert vault_call["api-version"] == "7.4"


def test_azureml_wrong_identity_fails_start_naming_the_variable(
        model_root: Path, tmp_path: Path, azure_identity_and_vault: tuple[str, list[dict[str, str]]]) -> None:
    base, _ = azure_identity_and_vault
    env = {**base_env(c.AZUREML, model_root), c.API_KEY_SECRET_URI: f"{base}/secrets/endpointApiKey",
           c.IDENTITY_CLIENT_ID: "someone-else", c.AZUREML_MSI_ENDPOINT: f"{base}/msi/token",
           c.AZUREML_MSI_SECRET: "msi-secret"}
    with pytest.raises(PlatformError) as err:
        startup(env, tmp_path)
    assert str(err.value) == ("MSI_ENDPOINT: token request answered 403; check the deployment's identity "
                              "(SHIPWAY_IDENTITY_CLIENT_ID) is assigned to the endpoint")
