"""Gate evidence: prod serves only versions tagged shipway.gates.passed=true in the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pulumi.runtime.config as pulumi_config
import pytest

from policies.ml.gates import GateEvidence, make_require_gate_evidence, mlflow_gate_lookup, served_versions
from tests.policies.baselines import DEV, PROD, RESOURCES
from tests.policies.support import check
from tests.support.threads import serve_in_thread

URI = PROD["trackingUri"]


class FakeRegistry:
    """A lookup that answers from a table and records what it was asked."""

    def __init__(self, status: str = "passed", detail: str = "") -> None:
        self.answer = GateEvidence(status, detail)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, uri: str, name: str, version: int) -> GateEvidence:
        self.calls.append((uri, name, version))
        return self.answer


def _run(
    registry: FakeRegistry, key: str = "local-endpoint", config: dict[str, Any] | None = None
) -> list[str]:
    base = RESOURCES[key]
    return check(make_require_gate_evidence(registry), base.type, base.props, config=config or PROD)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("local-endpoint", [("churn", 3)]),
        ("local-pin", [("churn", 3)]),
        ("sm-model", [("churn", 3)]),
        ("aml-deployment", [("churn", 3)]),
        ("k8s-serving", [("churn", 3)]),
        ("local-tracking", []),
        ("kms-key", []),
    ],
)
def test_served_versions_are_found_on_every_target(key: str, expected: list[tuple[str, int]]) -> None:
    from tests.policies.support import engine_view

    base = RESOURCES[key]
    assert served_versions(base.type, engine_view(base.props)) == expected


def test_passing_evidence_is_accepted_and_the_configured_registry_is_asked() -> None:
    registry = FakeRegistry("passed")
    assert _run(registry) == []
    assert registry.calls == [(URI, "churn", 3)]


def test_failed_evidence_is_reported() -> None:
    registry = FakeRegistry("failed", "shipway.gates.passed is 'false'")
    assert _run(registry) == [
        "model 'churn' version 3 has no passing gate evidence (shipway.gates.passed is 'false'); "
        "run `shipway model promote` gates first"
    ]


def test_missing_version_is_reported() -> None:
    assert _run(FakeRegistry("missing")) == [f"model 'churn' version 3 is not in the registry at {URI}"]


def test_unreachable_registry_blocks_only_when_required() -> None:
    registry = FakeRegistry("unreachable", "connection refused")
    assert _run(registry) == [
        f"cannot verify gate evidence for model 'churn' version 3: registry at {URI} is unreachable "
        "(connection refused)"
    ]
    assert _run(registry, config={**PROD, "requireReachableRegistry": False}) == []


def test_outside_prod_the_registry_is_not_asked() -> None:
    registry = FakeRegistry("failed")
    assert _run(registry, config=DEV) == []
    assert registry.calls == []


@pytest.fixture
def stack_registry_uri() -> Iterator[str]:
    uri = "https://mlflow.shipway-prod.internal"
    pulumi_config.set_config("shipway:registryUri", uri)
    yield uri
    pulumi_config.CONFIG.get().pop("shipway:registryUri", None)


def test_without_a_configured_uri_the_stack_registry_is_used(stack_registry_uri: str) -> None:
    registry = FakeRegistry("passed")
    assert _run(registry, config={**PROD, "trackingUri": ""}) == []
    assert registry.calls == [(stack_registry_uri, "churn", 3)]


def test_without_any_registry_uri_nothing_is_looked_up() -> None:
    registry = FakeRegistry("failed")
    assert _run(registry, config={**PROD, "trackingUri": ""}) == []
    assert registry.calls == []


# --------------------------------------------------------------- the real MLflow lookup


class _RegistryHandler(BaseHTTPRequestHandler):
    """Just enough of MLflow's REST API: GET model-versions/get."""

    versions: dict[tuple[str, str], dict[str, str]] = {
        ("churn", "3"): {"shipway.gates.passed": "true"},
        ("churn", "4"): {"shipway.gates.passed": "false"},
    }
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlparse(self.path)
        self.seen.append(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        tags = self.versions.get((query.get("name", ""), query.get("version", "")))
        if url.path != "/api/2.0/mlflow/model-versions/get" or tags is None:
            self._reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not found"})
            return
        self._reply(
            200,
            {
                "model_version": {
                    "name": query["name"],
                    "version": query["version"],
                    "current_stage": "None",
                    "status": "READY",
                    "tags": [{"key": k, "value": v} for k, v in tags.items()],
                }
            },
        )

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _RegistryHandler)
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_mlflow_lookup_reads_the_gate_tag_over_the_rest_api(registry_url: str) -> None:
    assert mlflow_gate_lookup(registry_url, "churn", 3) == GateEvidence("passed")
    assert mlflow_gate_lookup(registry_url, "churn", 4) == GateEvidence(
        "failed", "shipway.gates.passed is 'false'"
    )
    assert mlflow_gate_lookup(registry_url, "churn", 9) == GateEvidence(
        "missing", "model 'churn' version 9 does not exist"
    )
    assert set(_RegistryHandler.seen) == {"/api/2.0/mlflow/model-versions/get"}


def test_mlflow_lookup_reports_an_unreachable_registry_without_retrying() -> None:
    with HTTPServer(("127.0.0.1", 0), _RegistryHandler) as closed:
        port = closed.server_address[1]  # bound then closed: nothing listens there
    evidence = mlflow_gate_lookup(f"http://127.0.0.1:{port}", "churn", 3)
    assert evidence.status == "unreachable"
    assert f"127.0.0.1:{port}" in evidence.detail
