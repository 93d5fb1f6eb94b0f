"""The Kubernetes adapter's verification probe through the API server's Service proxy.

The real control plane in tests/integration/test_kubernetes_target.py has no kubelet, so no pod
answers a proxied request there. This test stands a small HTTP server on 127.0.0.1 in for the
API server and answers with the shapes the Kubernetes API documents (a Deployment, a Secret, the
proxied app's JSON): it proves which paths and headers the probe sends and how it reads answers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from components.kubernetes.podspec import SECRET_KEY
from shipway.targets.base import AdapterContext
from shipway.targets.kubernetes import API_KEY_DATA_KEY, KubeApi, KubernetesAdapter, rollout
from shipway_core.config import SloSettings, parse_stack_config
from shipway_core.outputs import PlatformOutputs
from tests.support.threads import serve_in_thread

NS, MODEL, KEY = "shipway-dev", "iris", "k3y"


def deployment(version: int, ready: int = 2, generation: int = 3, observed: int = 3) -> dict[str, Any]:
    return {"metadata": {"name": f"serve-{MODEL}", "generation": generation},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "serve", "env": [{"name": "SHIPWAY_MODEL_VERSION", "value": str(version)}]}]}}},
            "status": {"observedGeneration": observed, "updatedReplicas": ready, "readyReplicas": ready,
                       "availableReplicas": ready}}


class FakeApiServer(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    live: dict[str, Any] = {}

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(("GET", self.path, dict(self.headers), b""))
        if self.path == f"/apis/apps/v1/namespaces/{NS}/deployments/serve-{MODEL}":
            self._answer(200, self.live["deployment"])
        elif self.path == f"/api/v1/namespaces/{NS}/secrets/api-key-secret":
            self._answer(200, {"kind": "Secret", "data": {API_KEY_DATA_KEY: base64.b64encode(KEY.encode()).decode()}})
        else:
            self._answer(404, {"kind": "Status", "code": 404})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, dict(self.headers), body))
        rows = json.loads(body)["dataframe_split"]["data"]
        self._answer(200, {"predictions": [1] * len(rows)})


@pytest.fixture()
def adapter(tmp_path: Path) -> Iterator[KubernetesAdapter]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    FakeApiServer.seen = []
    FakeApiServer.live = {"deployment": deployment(2)}
    serve_in_thread(server)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "other", "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "deploy-token"}}],
        "contexts": [{"name": "ci", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "missing", "user": "u"}}]}))
    outputs = PlatformOutputs.from_exports({
        "cloud": "kubernetes", "environment": "dev", "trackingUri": "http://mlflow", "registryUri": "http://mlflow",
        "endpoints": {MODEL: {"url": f"http://serve-{MODEL}.{NS}.svc.cluster.local", "version": 2,
                              "status": f"kubernetes:{NS}/serve-{MODEL}", "apiKeyRef": "api-key-secret"}},
        "observability": {}, "target": {"namespace": NS}}, stack="dev")
    cfg = parse_stack_config("dev", {"cloud": "kubernetes", "environment": "dev", "owner": "o", "costCenter": "c",
                                     "dataClassification": "internal", "models": {MODEL: {"version": 2}}})
    try:
        yield KubernetesAdapter(outputs, cfg, AdapterContext(root=tmp_path, registry_factory=lambda _u: None,
                                                             probe_seconds=0.5),
                                api=KubeApi(kubeconfig, "ci"))
    finally:
        server.shutdown()


def test_probe_goes_through_the_service_proxy_with_the_key_from_the_secret(adapter: KubernetesAdapter) -> None:
    features = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    result = adapter.verify(MODEL, 2, SloSettings(), features=features, offline=[1, 1])
    assert result.ok, result.as_dict()
    posts = [s for s in FakeApiServer.seen if s[0] == "POST"]
    assert posts and {p[1] for p in posts} == {f"/api/v1/namespaces/{NS}/services/serve-{MODEL}:http/proxy/invocations"}
    headers = posts[0][2]
    assert headers["Authorization"] == "Bearer deploy-token"  # the API server's credential (the context's user)
    assert headers["X-Api-Key"] == KEY  # the app's key, read from the endpoint's Secret
    assert headers["X-Shipway-Traffic"] == "verification"  # kept out of the SLO series and drift windows
    assert json.loads(posts[0][3])["dataframe_split"]["columns"] == ["a", "b"]


def test_wrong_version_or_unfinished_rollout_fails_before_any_probe(adapter: KubernetesAdapter) -> None:
    wrong = adapter.verify(MODEL, 3, SloSettings(), features=pd.DataFrame({"a": [1.0]}), offline=[1])
    assert not wrong.ok and "serves version 2 of 'iris', expected 3" in wrong.reason
    FakeApiServer.live["deployment"] = deployment(2, ready=1, generation=4, observed=4)
    rolling = adapter.verify(MODEL, 2, SloSettings(), features=pd.DataFrame({"a": [1.0]}), offline=[1])
    assert not rolling.ok and "has not finished rolling out version 2" in rolling.reason
    assert not [s for s in FakeApiServer.seen if s[0] == "POST"]


def test_rollout_states() -> None:
    assert rollout(deployment(2))[0] == "up"
    assert rollout(deployment(2, observed=2))[0] == "updating"
    assert rollout(deployment(2, ready=0))[0] == "updating"
    assert rollout({**deployment(2), "status": {"observedGeneration": 3, "updatedReplicas": 2}})[0] == "down"


def test_unknown_context_is_a_clear_error(tmp_path: Path) -> None:
    from shipway.targets.base import TargetError

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"clusters": [], "contexts": [{"name": "a", "context": {"cluster": "c"}}]}))
    with pytest.raises(TargetError, match=r"kubernetes:context: 'prod-cluster' is not a context of .* \(it has: a\)"):
        KubeApi(kubeconfig, "prod-cluster")


def test_secret_key_matches_what_the_component_writes() -> None:
    assert API_KEY_DATA_KEY == SECRET_KEY
