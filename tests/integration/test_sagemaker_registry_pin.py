"""Registry pins against a SageMaker managed MLflow ARN (components/registry/sagemaker.py).

No SageMaker here: the region's MLflow endpoint is replaced, the way the sagemaker-mlflow plugin
allows (``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``), by a recording proxy on 127.0.0.1 in front of a real
MLflow server. What is proven: the ModelPin provider's pre-flight (check/create/update) and alias
calls go to that endpoint, carry the tracking-server ARN header SageMaker routes by and a SigV4
signature for the ``sagemaker-mlflow`` service in the ARN's region (made by the plugin's signer
with the caller's credentials), and a missing version is refused naming it.
"""

from __future__ import annotations

import http.server
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from components.registry.pin import ModelPinProvider
from shipway_core import registry_rest as rest
from tests.support.mlflowserver import mlflow_server, register_stub_versions
from tests.support.threads import serve_in_thread

pytestmark = pytest.mark.integration

ARN = "arn:aws:sagemaker:eu-west-1:000000000000:mlflow-tracking-server/shipway-registry"
MODEL = "churn"


class Recorder(http.server.ThreadingHTTPServer):
    upstream: str
    seen: list[dict[str, Any]]


class _Forward(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        self.server.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
        req = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the test's own MLflow server
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = _forward

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recorder, str]]:
    root = tmp_path_factory.mktemp("sm-registry")
    with mlflow_server(root) as uri:
        register_stub_versions(uri, MODEL, 2, root)
        proxy = Recorder(("127.0.0.1", 0), _Forward)
        proxy.upstream, proxy.seen = uri, []
        serve_in_thread(proxy)
        try:
            yield proxy, uri
        finally:
            proxy.shutdown()
            proxy.server_close()


@pytest.fixture
def sagemaker_env(endpoint: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch) -> Recorder:
    proxy, _ = endpoint
    monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSHIPWAYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shipway-test-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    proxy.seen.clear()
    return proxy


def props(version: int) -> dict[str, Any]:
    return {"shipwayKind": "RegistryPin", "trackingUri": ARN, "modelName": MODEL, "version": version,
            "alias": "prod", "retainOnDelete": False}


def test_pin_through_the_arn_is_signed_routed_and_sets_the_alias(sagemaker_env: Recorder,
                                                                  endpoint: tuple[Recorder, str]) -> None:
    provider = ModelPinProvider()
    assert provider.check({}, props(2)).failures == []
    created = provider.create(props(2))
    assert created.id == f"{MODEL}@prod" and created.outs["aliasTarget"] == 2
    provider.update(created.id, created.outs, props(1))
    _, uri = endpoint
    assert rest.get_alias(uri, MODEL, "prod") == 1  # read straight from the MLflow server
    assert sagemaker_env.seen, "nothing reached the SageMaker MLflow endpoint"
    for call in sagemaker_env.seen:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        assert call["path"].startswith("/api/2.0/mlflow/"), call
        assert headers["x-mlflow-sm-tracking-server-arn"] == ARN
        auth = headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDSHIPWAYTEST/"), auth
        assert "/eu-west-1/sagemaker-mlflow/aws4_request" in auth, auth
        assert "x-amz-date" in headers
    assert {c["method"] for c in sagemaker_env.seen} >= {"GET", "POST"}


def test_missing_version_is_refused_at_preview_naming_what_exists(sagemaker_env: Recorder) -> None:
    failures = ModelPinProvider().check({}, props(99)).failures
    assert len(failures) == 1 and failures[0].property == "version"
    assert f"model '{MODEL}' version 99 does not exist in the registry at {ARN}" in failures[0].reason
    assert "registered versions: 1, 2" in failures[0].reason


def test_a_malformed_arn_or_missing_credentials_are_clear_errors(sagemaker_env: Recorder,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rest.RegistryError, match="not a SageMaker MLflow tracking server ARN"):
        rest.get_version("arn:aws:sagemaker:eu-west-1:000000000000", MODEL, 1)
    with pytest.raises(rest.RegistryError, match="names a mlflow-app, not an mlflow-tracking-server"):
        rest.get_version("arn:aws:sagemaker:eu-west-1:000000000000:mlflow-app/x", MODEL, 1)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(rest.RegistryError, match="no AWS credentials to sign with"):
        rest.get_version(ARN, MODEL, 1)
    assert sagemaker_env.seen == []
