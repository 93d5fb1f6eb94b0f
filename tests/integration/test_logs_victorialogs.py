"""`shipway logs` and the alerts' prepared log query against a real VictoriaLogs (the binary
`make setup` builds into .shipway/tools/bin/), started on 127.0.0.1 with a throwaway data dir:
the lines it prints are the ones the store holds for that model/version/trace, oldest first,
and an alert's API link returns the same lines."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shipway.cli import app as root
from shipway_core.observability.links import log_api_link

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".shipway" / "tools" / "bin" / "victoria-logs"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: run `make setup` (it builds VictoriaLogs from its Go module)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("victorialogs")
    proc = subprocess.Popen([str(BINARY), f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-retentionPeriod=7d"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("VictoriaLogs did not answer /health within 30 s")
            time.sleep(0.2)
        now = datetime.now(UTC)
        lines = [
            {"_time": (now - timedelta(seconds=30)).isoformat(), "_msg": "POST /invocations 200", "level": "info",
             "service.name": "shipway-serving", "model": "iris-classifier", "version": "2", "trace_id": "a" * 32},
            {"_time": (now - timedelta(seconds=20)).isoformat(), "_msg": "POST /invocations 500", "level": "error",
             "service.name": "shipway-serving", "model": "iris-classifier", "version": "2", "trace_id": "b" * 32},
            {"_time": (now - timedelta(seconds=10)).isoformat(), "_msg": "POST /invocations 200", "level": "info",
             "service.name": "shipway-serving", "model": "iris-classifier", "version": "1", "trace_id": "c" * 32},
            {"_time": (now - timedelta(hours=3)).isoformat(), "_msg": "old line", "level": "info",
             "service.name": "shipway-serving", "model": "iris-classifier", "version": "2", "trace_id": "d" * 32},
            {"_time": (now - timedelta(seconds=5)).isoformat(), "_msg": "other model", "level": "info",
             "service.name": "shipway-serving", "model": "churn", "version": "2", "trace_id": "e" * 32},
        ]
        response = httpx.post(url + "/insert/jsonline", params={"_stream_fields": "service.name,model"},
                              content="".join(json.dumps(r) + "\n" for r in lines), timeout=10)
        assert response.status_code == 200, response.text
        httpx.get(url + "/internal/force_flush", timeout=10)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _logs(store: str, *args: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(root, ["logs", "iris-classifier", "--url", store + "/select/logsql/query",
                                       "--json", *args])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output)["records"])


def test_logs_finds_the_models_lines_in_the_window_oldest_first(store: str) -> None:
    records = _logs(store, "--since", "1h")
    assert [r["trace_id"] for r in records] == ["a" * 32, "b" * 32, "c" * 32]
    assert {r["service.name"] for r in records} == {"shipway-serving"}


def test_logs_filters_by_version_trace_and_logsql(store: str) -> None:
    assert [r["trace_id"] for r in _logs(store, "--version", "2")] == ["a" * 32, "b" * 32]
    assert [r["_msg"] for r in _logs(store, "--trace", "b" * 32)] == ["POST /invocations 500"]
    assert [r["trace_id"] for r in _logs(store, "--query", "level:error")] == ["b" * 32]
    assert [r["trace_id"] for r in _logs(store, "--since", "1d", "--version", "2")] == ["d" * 32, "a" * 32, "b" * 32]


def test_a_bad_logsql_is_the_stores_own_error(store: str) -> None:
    result = CliRunner().invoke(root, ["logs", "iris-classifier", "--url", store + "/select/logsql/query",
                                       "--query", "level:(error"])
    assert result.exit_code == 1
    assert "refused the query" in " ".join(result.output.split())


def test_an_alerts_api_link_returns_the_same_lines(store: str) -> None:
    response = httpx.get(log_api_link(store, "iris-classifier", 2, "1h"), timeout=10)
    assert response.status_code == 200, response.text
    trace_ids = sorted(json.loads(line)["trace_id"] for line in response.text.splitlines() if line.strip())
    assert trace_ids == ["a" * 32, "b" * 32]
