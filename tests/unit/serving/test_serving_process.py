"""The real serving process: hot swap under continuous traffic without a failed request, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_support import IRIS, Registry

KEY = "integration-key-0123456789"
ROW = {"inputs": {"sepal_length": [5.1], "sepal_width": [3.5], "petal_length": [1.4], "petal_width": [0.2]}}
STARTUP_SECONDS = 240  # the first load imports MLflow and skops, slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Traffic:
    """Sends 1-row requests back to back from a thread until stopped (bounded in time)."""

    def __init__(self, base: str, limit_seconds: float = 600):
        self.base = base
        self.limit = limit_seconds
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.base, headers={"X-API-Key": KEY}, timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post("/invocations", json=ROW)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture
def server(registry: Registry, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    pin = registry.pin_file(tmp_path / "pin.json", IRIS, 1)
    key = tmp_path / "api-key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    port = free_port()
    stdout = tmp_path / "server.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the pin file alone decides
    with stdout.open("wb") as out, (tmp_path / "server.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipway.serving", "--pin-file", str(pin), "--host", "127.0.0.1",
             "--port", str(port), "--api-key-file", str(key), "--environment", "local",
             "--request-log", str(tmp_path / "requests.jsonl")],
            stdout=out, stderr=err, env=env, cwd=tmp_path)
    try:
        yield proc, f"http://127.0.0.1:{port}", tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.integration
def test_hot_swap_under_traffic_then_clean_sigterm(server: tuple[subprocess.Popen[bytes], str, Path],
                                                    registry: Registry) -> None:
    proc, base, tmp = server

    def ready() -> bool:
        assert proc.poll() is None, (tmp / "server.err").read_text()[-2000:]
        try:
            return httpx.get(f"{base}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, STARTUP_SECONDS, "/ready")
    assert httpx.get(f"{base}/version").json()["model_version"] == 1
    assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")

    traffic = Traffic(base)
    traffic.start()
    try:
        wait_for(lambda: traffic.ok >= 20, 60, "traffic on version 1")
        new_version = registry.register_iris()
        registry.pin_file(tmp / "pin.json", IRIS, new_version)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(f"{base}/version").json()["model_version"] == new_version,
                 STARTUP_SECONDS, f"/version to report {new_version}")
        served_before = traffic.ok
        wait_for(lambda: traffic.ok >= served_before + 20, 60, "traffic on the new version")
    finally:
        traffic.stop()
    assert traffic.failures == []

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    lines = log_lines(tmp / "server.out")
    served = {(line["version"], line["status"]) for line in lines if line.get("route") == "/invocations"}
    assert served == {(1, 200), (new_version, 200)}
    events = [line["event"] for line in lines if "event" in line and line["event"] != "log"]
    assert events.index("model_swapped") < events.index("model_drained") < events.index("shutdown")
    assert KEY not in (tmp / "server.out").read_text()
    logged = [json.loads(line) for line in (tmp / "requests.jsonl").read_text().splitlines()]
    assert {line["version"] for line in logged} == {1, new_version}
