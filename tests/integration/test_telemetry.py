"""The telemetry hub for real: serving app -> OpenTelemetry Collector -> Jaeger + VictoriaLogs.

One throwaway local stack (`pulumi up` with the built collector and log store): a request's
trace is in Jaeger and its log line in VictoriaLogs, both found by its trace id; probe
requests leave neither; a log-store outage loses no request and the collector's bounded
queue resends what it held once the store is back.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest

from shipway.example import sample_request, train_and_register
from shipway_core.local import status_file

pytestmark = pytest.mark.integration

MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def up(project):
    project.write_config(local={**project.config["local"], "alertSinkPort": project.ports["tracking"] + 11})
    version = train_and_register(project.tracking_store[0], variant="baseline",
                                 artifact_root=project.tracking_store[1]).version
    project.pin(MODEL, version)
    project.pulumi("up", "--yes")
    return project.outputs()


def _invoke(up, project, trace_id: str, path: str = "/invocations") -> httpx.Response:
    headers = {"Authorization": f"Bearer {project.api_key}", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    url = up["endpoints"][MODEL]["url"] + path
    if path == "/invocations":
        return httpx.post(url, json=sample_request(), headers=headers, timeout=30)
    return httpx.get(url, headers=headers, timeout=30)


def _logs(project, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{project.ports['logStore']}/select/logsql/query"
    resp = httpx.get(url, params={"query": query}, timeout=30)
    resp.raise_for_status()
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _wait_logs(project, query: str, want: int = 1, seconds: float = 60) -> list[dict]:
    deadline = time.monotonic() + seconds
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = _logs(project, query)
        if len(found) >= want:
            return found
        time.sleep(0.5)
    return found


def _jaeger_spans(up, trace_id: str) -> list[dict]:
    resp = httpx.get(f"{up['observability']['tracesUrl']}/api/traces/{trace_id}", timeout=10)
    if resp.status_code != 200:
        return []
    return [s for t in resp.json().get("data") or [] for s in t.get("spans", [])]


def test_a_requests_trace_is_in_jaeger_and_its_log_line_in_victorialogs(up, project):
    trace_id = secrets.token_hex(16)
    assert _invoke(up, project, trace_id).status_code == 200
    deadline = time.monotonic() + 30
    spans: list[dict] = []
    while not spans and time.monotonic() < deadline:
        spans = _jaeger_spans(up, trace_id)
        time.sleep(0.5)
    assert [s["operationName"] for s in spans] == ["POST /invocations"]
    records = _wait_logs(project, f'model:"{MODEL}" trace_id:"{trace_id}"')
    assert len(records) == 1, records
    line = records[0]
    assert line["service.name"] == "shipway-serving"
    assert line["version"] == "1" and line["level"] == "info"
    assert line["span_id"] == spans[0]["spanID"]
    assert line["_msg"] == "POST /invocations 200"


def test_prometheus_scrapes_every_pipeline_process_mlflow_and_jaeger_included(up, project):
    from shipway_core.observability.pipeline import PIPELINE_JOBS

    url = f"http://127.0.0.1:{project.ports['prometheus']}/api/v1/targets"
    want = {job: "up" for job in PIPELINE_JOBS}
    deadline = time.monotonic() + 60
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        active = httpx.get(url, params={"state": "active"}, timeout=10).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active if t["labels"]["job"] in PIPELINE_JOBS}
        if health == want:
            break
        time.sleep(1)
    assert health == want, active
    scraped = {t["labels"]["job"]: t["scrapeUrl"] for t in active if t["labels"]["job"] in ("mlflow", "jaeger")}
    assert scraped == {"mlflow": f"http://127.0.0.1:{project.ports['tracking']}/metrics",
                       "jaeger": f"http://127.0.0.1:{project.ports['jaegerMetrics']}/metrics"}
    # Their own series, not only `up`: the registry's request counter and Jaeger's span counters.
    query = f"http://127.0.0.1:{project.ports['prometheus']}/api/v1/query"
    names = ('mlflow_http_request_total{job="mlflow"}', 'otelcol_receiver_accepted_spans_total{job="jaeger"}')
    for name in names:
        result: list = []
        while not result and time.monotonic() < deadline + 60:
            result = httpx.get(query, params={"query": name}, timeout=10).json()["data"]["result"]
            time.sleep(1)
        assert result, f"no {name} in Prometheus"


def test_probe_requests_leave_no_trace_and_no_log_record(up, project):
    probe = secrets.token_hex(16)
    for path in ("/health", "/ping", "/ready", "/metrics"):
        assert _invoke(up, project, probe, path).status_code == 200
    # A real request after the probes: once its line and span are in, the probes' would be too.
    barrier = secrets.token_hex(16)
    assert _invoke(up, project, barrier).status_code == 200
    assert _wait_logs(project, f'trace_id:"{barrier}"'), "the barrier request's log line never arrived"
    deadline = time.monotonic() + 30
    while not _jaeger_spans(up, barrier) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _jaeger_spans(up, barrier)
    assert _jaeger_spans(up, probe) == []
    assert _logs(project, f'trace_id:"{probe}"') == []
    # ... while the probe lines are in the process log the collector tails.
    serving_log = project.data_dir / project.stack / "endpoints" / MODEL / "serving.log"
    assert serving_log.read_text().count(probe) == 4


def test_a_log_store_outage_loses_no_request_and_the_queue_resends(up, project):
    status = json.loads(status_file(project.data_dir / project.stack / "victorialogs", "LogStore").read_text())
    store_pid = int(status["pid"])
    assert Path(f"/proc/{store_pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"victoria-logs")
    marker = secrets.token_hex(4)
    ids = [f"{marker}{i:024x}" for i in range(200)]
    os.kill(store_pid, signal.SIGSTOP)  # the store hangs: no answer, no restart by the supervisor
    try:
        outage_start = time.monotonic()
        statuses = [_invoke(up, project, tid).status_code for tid in ids]
        time.sleep(3)  # the collector's batch is out and waiting on the hung store
        queue = _queue_metrics(project)
        outage = time.monotonic() - outage_start
    finally:
        os.kill(store_pid, signal.SIGCONT)
    resumed = time.monotonic()
    assert statuses == [200] * len(ids)
    query = f'model:"{MODEL}" trace_id:~"^{marker}" | stats count() as n'
    deadline = resumed + 120
    arrived = 0
    while time.monotonic() < deadline:
        rows = _logs(project, query)
        arrived = int(rows[0]["n"]) if rows else 0
        if arrived >= len(ids):
            break
        time.sleep(0.5)
    delay = time.monotonic() - resumed
    print(f"\noutage {outage:.1f}s: {len(ids)} requests served, {arrived} log records arrived "
          f"{delay:.1f}s after the store returned; log queue during the outage: {queue}")
    assert arrived == len(ids)
    # The queue is bounded: its capacity is the configured number of batches.
    assert queue.get("capacity") == 5000.0, queue


def _queue_metrics(project) -> dict[str, float]:
    """The collector's own queue figures for the log exporter (size, capacity) from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{project.ports['collectorMetrics']}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if 'otlp_http/logs' not in line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0]
        if name in ("otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity"):
            found[name.rsplit("_", 1)[1]] = float(line.rsplit(" ", 1)[1])
    return found


def _child_pid(project, component: str, kind: str) -> int:
    status = json.loads(status_file(project.data_dir / project.stack / component, kind).read_text())
    return int(status["pid"])


def test_lines_queued_on_disk_survive_a_collector_restart_while_the_log_store_is_down(up, project):
    """file_storage: the log exporter's queue and the filelog offsets are on disk, so lines the
    collector held when it stopped reach the store after it restarts (at-least-once)."""
    store_pid = _child_pid(project, "victorialogs", "LogStore")
    collector_pid = _child_pid(project, "otelcol", "Collector")
    assert Path(f"/proc/{collector_pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"otelcol-shipway")
    storage = project.data_dir / project.stack / "otelcol" / "storage"
    marker = secrets.token_hex(4)
    ids = [f"{marker}{i:024x}" for i in range(100)]
    os.kill(store_pid, signal.SIGSTOP)
    try:
        statuses = [_invoke(up, project, tid).status_code for tid in ids]
        time.sleep(3)  # read, batched and queued: the batch is waiting on the hung store
        held = _queue_metrics(project)
        on_disk = sorted(p.name for p in storage.iterdir())
        stopped = time.monotonic()
        os.kill(collector_pid, signal.SIGTERM)  # an orderly stop; its supervisor starts a new one
        restarted = exited = None
        while time.monotonic() - stopped < 90:
            if exited is None and not Path(f"/proc/{collector_pid}").exists():
                exited = time.monotonic()
            try:
                pid = _child_pid(project, "otelcol", "Collector")
                if pid != collector_pid and httpx.get(
                        f"http://127.0.0.1:{project.ports['collectorMetrics']}/metrics", timeout=2).status_code == 200:
                    restarted = time.monotonic()
                    break
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        assert restarted is not None, "the collector did not come back within 90 s"
        requeued = _queue_metrics(project)
    finally:
        os.kill(store_pid, signal.SIGCONT)
    resumed = time.monotonic()
    assert statuses == [200] * len(ids)
    query = f'model:"{MODEL}" trace_id:~"^{marker}" | stats count_uniq(trace_id) as ids, count() as n'
    rows: list[dict] = []
    while time.monotonic() - resumed < 120:
        rows = _logs(project, query)
        if rows and int(rows[0]["ids"]) >= len(ids):
            break
        time.sleep(0.5)
    delay = time.monotonic() - resumed
    arrived, records = (int(rows[0]["ids"]), int(rows[0]["n"])) if rows else (0, 0)
    shutdown = f"{exited - stopped:.1f}s" if exited else "?"
    print(f"\nqueue before the restart {held}, after {requeued}; storage files {on_disk}; collector exited "
          f"{shutdown} and was back {restarted - stopped:.1f}s after SIGTERM; {arrived}/{len(ids)} request lines "
          f"({records} records) arrived {delay:.1f}s after the store returned")
    assert arrived == len(ids)
    assert any(name.startswith("exporter_otlp_http_logs") for name in on_disk), on_disk
