"""`shipway logs MODEL` against a fake VictoriaLogs query API on 127.0.0.1 (documented JSON-lines
response), reached through the stack's outputs; clear errors for a dead store, a bad --since and
a model the stack does not serve."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway.cli import app as root
from shipway.promotion import Services
from tests.support.threads import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
RECORDS = [
    {"_time": "2026-12-04T10:00:02Z", "_msg": "POST /invocations 200", "level": "info",
     "service.name": "shipway-serving", "model": "iris-classifier", "version": "1", "trace_id": "b" * 32},
    {"_time": "2026-12-04T10:00:01Z", "_msg": "POST /invocations 400", "level": "warning",
     "service.name": "shipway-serving", "model": "iris-classifier", "version": "1", "trace_id": "a" * 32},
]


class FakeStore(BaseHTTPRequestHandler):
    queries: list[dict[str, list[str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        params = urllib.parse.parse_qs(self.rfile.read(length).decode())
        type(self).queries.append({"path": [self.path], **params})
        if self.path != "/select/logsql/query":
            self.send_response(404)
            self.end_headers()
            return
        if "bad(" in params["query"][0]:
            body = b"cannot parse query [bad(]: missing ')'"
            self.send_response(400)
        else:
            body = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/stream+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def store() -> Iterator[str]:
    FakeStore.queries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeStore)
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Engine:
    def __init__(self, root: Path, outputs: dict[str, Any]):
        self.root, self.outputs = root, outputs

    def repo_root(self) -> Path:
        return self.root

    def stack_outputs(self, env: str) -> dict[str, Any]:
        return self.outputs


def _services(tmp_path: Path, store_url: str | None) -> Services:
    (tmp_path / "stacks").mkdir(exist_ok=True)
    shutil.copy(REPO / "stacks" / "Pulumi.local.yaml", tmp_path / "stacks" / "Pulumi.local.yaml")
    observability = {"logStoreUrl": store_url, "logQueryUrl": store_url + "/select/logsql/query"} if store_url else {}
    outputs = {"cloud": "local", "environment": "local", "trackingUri": "http://127.0.0.1:5000",
               "registryUri": "http://127.0.0.1:5000", "observability": observability} if store_url else {}
    return Services(engine=Engine(tmp_path, outputs), actor="a@example.com")  # type: ignore[arg-type]


def _flat(text: str) -> str:
    """The output's words, without rich's box edges (a long message wraps inside the box)."""
    return " ".join(text.replace("│", " ").split())


def _run(services: Services, *args: str) -> Any:
    return CliRunner().invoke(root, ["logs", *args], obj=services)


def test_logs_prints_the_models_lines_oldest_first_from_the_stacks_store(tmp_path: Path, store: str) -> None:
    result = _run(_services(tmp_path, store), "iris-classifier", "--since", "1h", "--trace", "a" * 32,
                  "--query", "level:warning", "--limit", "5")
    assert result.exit_code == 0, result.output
    sent = FakeStore.queries[-1]
    assert sent["query"] == [f"_time:1h model:iris-classifier trace_id:{'a' * 32} (level:warning)"]
    assert sent["limit"] == ["5"]
    assert result.output.index("POST /invocations 400") < result.output.index("POST /invocations 200")
    assert "shipway-serving" in result.output and "a" * 32 in result.output


def test_logs_json_output_carries_the_records_and_the_query(tmp_path: Path, store: str) -> None:
    result = _run(_services(tmp_path, store), "iris-classifier", "--version", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["query"] == "_time:15m model:iris-classifier version:1"
    assert doc["url"] == store + "/select/logsql/query"
    assert [r["trace_id"] for r in doc["records"]] == ["a" * 32, "b" * 32]


def test_an_unreachable_store_names_its_url_and_what_to_run(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = _run(_services(tmp_path, dead), "iris-classifier")
    assert result.exit_code == 1
    message = _flat(result.output)
    assert f"the log store at {dead}/select/logsql/query is unreachable" in message
    assert "shipway platform up" in message


def test_without_outputs_the_local_store_comes_from_the_stack_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    services = _services(tmp_path, None)
    stack = tmp_path / "stacks" / "Pulumi.local.yaml"
    stack.write_text(stack.read_text().replace("logStorePort: 9428", f"logStorePort: {port}"))
    result = _run(services, "iris-classifier")
    assert result.exit_code == 1
    assert f"the log store at http://127.0.0.1:{port}/select/logsql/query is unreachable" in _flat(result.output)


def test_a_refused_query_shows_the_stores_reason(tmp_path: Path, store: str) -> None:
    result = _run(_services(tmp_path, store), "iris-classifier", "--query", "bad(")
    assert result.exit_code == 1
    message = _flat(result.output)
    assert "refused the query" in message and "(HTTP 400)" in message and "missing ')'" in message


@pytest.mark.parametrize("since", ["15", "1w", "soon", "0m"])
def test_a_bad_since_is_refused_naming_the_option(tmp_path: Path, store: str, since: str) -> None:
    result = _run(_services(tmp_path, store), "iris-classifier", "--since", since)
    assert result.exit_code == 2
    message = _flat(result.output)
    assert "--since" in message and f"{since!r} is not a valid window" in message
    assert FakeStore.queries == []


def test_an_unknown_model_lists_the_stacks_models(tmp_path: Path, store: str) -> None:
    result = _run(_services(tmp_path, store), "churn")
    assert result.exit_code == 2
    assert "'churn' is not a model of 'local'; its models: iris-classifier" in _flat(result.output)
    assert FakeStore.queries == []


def test_an_env_without_a_stack_file_is_refused(tmp_path: Path, store: str) -> None:
    result = _run(_services(tmp_path, store), "iris-classifier", "--env", "staging")
    assert result.exit_code == 2
    assert "'staging' has no stack file" in _flat(result.output)
