"""A local platform that heals itself: kill -9 a server, its supervisor brings it back.

One throwaway stack, deployed by the real engine. Under a paced 100 requests/second load
the serving process is killed with SIGKILL; the test measures the time until the endpoint
is ready again and how many requests failed meanwhile (printed as the issue's figures),
and checks that the restart is counted (status file + Prometheus metric) and that
`pulumi refresh` and `pulumi preview` converge with nothing to change. MLflow and
Prometheus are killed the same way and come back too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import httpx
import pytest

from components.local import process
from shipway.example import sample_request, train_and_register
from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("heal"))
    project.write_config(local={**project.config["local"], "alertSinkPort": project.ports["tracking"] + 11})
    store, artifacts = project.tracking_store
    project.pin(MODEL, train_and_register(store, artifact_root=artifacts).version)
    project.pulumi("up", "--yes")
    try:
        yield project
    finally:
        project.pulumi("destroy", "--yes", check=False)


class PacedLoad:
    """``rps`` scoring requests per second on a fixed schedule (not as fast as possible), each
    outcome recorded with its send time, from a few threads."""

    def __init__(self, url: str, api_key: str, rps: int = 100, threads: int = 8):
        self.url, self.rps, self.threads = url + "/invocations", rps, threads
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.payload = sample_request(1)
        self.results: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _worker(self, index: int, start: float) -> None:
        n = index
        with httpx.Client(headers=self.headers, timeout=5) as client:
            while not self.stop.is_set():
                due = start + n / self.rps
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    outcome = "ok" if client.post(self.url, json=self.payload).status_code == 200 else "http"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.results.append((due, outcome))
                n += self.threads

    def __enter__(self) -> PacedLoad:
        start = time.monotonic()
        self.pool = [threading.Thread(target=self._worker, args=(i, start), daemon=True)
                     for i in range(self.threads)]
        for t in self.pool:
            t.start()
        time.sleep(2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.pool:
            t.join(10)

    def summary(self) -> dict:
        counts = Counter(outcome for _, outcome in self.results)
        span = (max(t for t, _ in self.results) - min(t for t, _ in self.results)) if self.results else 0
        return {"requests": len(self.results), "failed": len(self.results) - counts["ok"],
                "failures": {k: v for k, v in counts.items() if k != "ok"},
                "rps": round(len(self.results) / span, 1) if span else 0.0}


def _status(project: Project, relative: str) -> dict:
    return json.loads((project.data_dir / project.stack / relative).read_text())


def _wait_ready(url: str, timeout: float = 90.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.http_ok(url, timeout=1.0):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready again within {timeout:.0f} s")


def _resources(project: Project) -> list[dict]:
    return json.loads(project.pulumi("stack", "export").stdout)["deployment"].get("resources", [])


def test_kill_9_of_the_serving_process_under_100_rps_is_healed_without_pulumi(stack):
    outputs = stack.outputs()
    url = outputs["endpoints"][MODEL]["url"]
    status_file = f"endpoints/{MODEL}/InferenceEndpoint.status.json"
    before = _status(stack, status_file)
    with PacedLoad(url, stack.api_key) as load:
        killed_at = time.monotonic()
        os.kill(int(before["pid"]), 9)
        time.sleep(0.2)  # the port closes with the process; readiness must come from the new one
        ready_after = _wait_ready(url + "/ready")
        time.sleep(3)  # steady state again: every later request must succeed
    after = _status(stack, status_file)
    figures = {"kill9_to_ready_s": round(ready_after + 0.2, 2), **load.summary()}
    print(f"\nkill -9 of the serving process at 100 rps: {json.dumps(figures)}")
    assert after["restarts"] == before["restarts"] + 1
    assert after["pid"] != before["pid"] and after["supervisor_pid"] == before["supervisor_pid"]
    assert after["last_exit_code"] == -9
    assert httpx.get(url + "/version").json()["model_version"] == 1
    late = [o for t, o in load.results if t > killed_at + ready_after + 1.0]
    assert late and all(o == "ok" for o in late)  # failures are confined to the restart window
    assert load.summary()["rps"] >= 80  # the load really was ~100 rps
    log = (stack.data_dir / stack.stack / "endpoints" / MODEL / "serving.log").read_text()
    assert '"event": "child_restarted"' in log


def test_the_restart_is_a_prometheus_metric_and_refresh_and_preview_converge(stack):
    prom = stack.outputs()["observability"]["metricsUrl"]
    deadline = time.monotonic() + 60
    series: list = []
    while time.monotonic() < deadline and not series:
        series = httpx.get(prom + "/api/v1/query", params={
            "query": f'shipway_process_restarts_total{{process="InferenceEndpoint/{MODEL}"}} >= 1'}).json()[
            "data"]["result"]
        time.sleep(2)
    assert series, "restart count never reached Prometheus"
    stack.pulumi("refresh", "--yes")
    assert all(r["outputs"]["alive"] is True for r in _resources(stack)
               if r.get("custom") and "alive" in (r.get("outputs") or {}))
    out = stack.pulumi("preview", "--expect-no-changes", "--json")
    assert {s["op"] for s in json.loads(out.stdout)["steps"]} == {"same"}


@pytest.mark.parametrize(("status_file", "health"), [
    ("mlflow/TrackingServer.status.json", "{tracking}/health"),
    ("prometheus/Prometheus.status.json", "{prometheus}/-/ready"),
])
def test_mlflow_and_prometheus_come_back_after_kill_9(stack, status_file, health):
    outputs = stack.outputs()
    url = health.format(tracking=outputs["trackingUri"], prometheus=outputs["observability"]["metricsUrl"])
    before = _status(stack, status_file)
    os.kill(int(before["pid"]), 9)
    time.sleep(0.5)
    seconds = _wait_ready(url)
    after = _status(stack, status_file)
    print(f"\nkill -9 of {status_file.split('/')[0]}: ready again after {seconds + 0.5:.2f} s")
    assert after["restarts"] == before["restarts"] + 1 and after["pid"] != before["pid"]


def test_sigkill_of_a_supervisor_is_drift_that_up_repairs(stack):
    url = stack.outputs()["endpoints"][MODEL]["url"]
    supervisor = _status(stack, f"endpoints/{MODEL}/InferenceEndpoint.status.json")["supervisor_pid"]
    os.kill(int(supervisor), 9)
    time.sleep(1)
    stack.pulumi("refresh", "--yes")
    endpoint = next(r for r in _resources(stack) if (r.get("outputs") or {}).get("shipwayKind") == "InferenceEndpoint"
                    and r.get("custom"))
    assert endpoint["outputs"]["alive"] is False
    stack.pulumi("up", "--yes")  # stops the orphaned server (same group, our command line), starts anew
    assert process.http_ok(url + "/ready")
    assert _status(stack, f"endpoints/{MODEL}/InferenceEndpoint.status.json")["supervisor_pid"] != supervisor
