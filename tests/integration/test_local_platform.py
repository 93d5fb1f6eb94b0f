"""The `local` target for real: `pulumi up` starts MLflow, the serving app and Prometheus.

One throwaway stack walks through the issue's story in order: pre-flight refusal, first
up, every endpoint contract, secrets hygiene, idempotent second up, a hot pin change under
load with zero failed requests, refresh noticing a killed process, destroy leaving no
listener behind.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from components.local import process
from shipway.example import sample_request, train_and_register

pytestmark = pytest.mark.integration

MODEL = "iris-classifier"


def register(project, variant: str) -> int:
    uri = project.tracking_uri if process.http_ok(project.tracking_uri + "/health") else project.tracking_store[0]
    return train_and_register(uri, variant=variant, artifact_root=project.tracking_store[1]).version


def auth(project) -> dict[str, str]:
    return {"Authorization": f"Bearer {project.api_key}"}


@pytest.fixture(scope="module")
def up(project):
    """v1 registered and pinned, stack up."""
    # The alert sink's port comes from this test's free block too (never the default 9095).
    project.write_config(local={**project.config["local"], "alertSinkPort": project.ports["tracking"] + 11})
    project.pin(MODEL, register(project, "baseline"))
    project.pulumi("up", "--yes")
    return project.outputs()


def _resources(project) -> list[dict]:
    out = project.pulumi("stack", "export")
    return json.loads(out.stdout)["deployment"].get("resources", [])


def _managed(project) -> dict[str, tuple[dict, dict]]:
    """What the stack manages: each custom resource's inputs and outputs, by URN.

    Timestamps, order and the serialized dynamic provider (``__provider``, re-recorded on every
    run) are left out, and encrypted values are masked (their nonce changes on every write):
    none of them says anything about what is deployed.
    """
    secret_sig = "4dabf18193072939515e22adb298388d"

    def plain(values: dict | None) -> dict:
        return {k: "<secret>" if isinstance(v, dict) and secret_sig in v else v
                for k, v in (values or {}).items() if not k.startswith("__")}

    return {r["urn"]: (plain(r.get("inputs")), plain(r.get("outputs"))) for r in _resources(project)
            if r.get("custom") and not r["type"].startswith("pulumi:providers:")}


def _is_endpoint(res: dict) -> bool:
    return res["type"] == "pulumi-python:dynamic:Resource" and (res.get("outputs") or {}).get(
        "shipwayKind") == "InferenceEndpoint"


def test_first_up_serves_the_pinned_version(up, project):
    endpoint = up["endpoints"][MODEL]
    assert up["trackingUri"] == project.tracking_uri
    assert endpoint["version"] == 1
    base = endpoint["url"]
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    assert httpx.get(base + "/ready").status_code == 200
    version = httpx.get(base + "/version").json()
    assert (version["model_name"], version["model_version"]) == (MODEL, 1)
    assert httpx.get(project.tracking_uri + "/health").status_code == 200


def test_invocations_accept_mlflow_payloads_and_require_the_key(up, project):
    base = up["endpoints"][MODEL]["url"]
    split = sample_request(3)["dataframe_split"]
    records = [dict(zip(split["columns"], row, strict=True)) for row in split["data"]]
    answers = [
        httpx.post(base + "/invocations", json=payload, headers=auth(project)).json()["predictions"]
        for payload in ({"dataframe_split": split}, {"dataframe_records": records},
                        {"inputs": {c: [r[c] for r in records] for c in split["columns"]}})
    ]
    assert answers[0] == answers[1] == answers[2]
    assert len(answers[0]) == 3
    assert httpx.post(base + "/invocations", json={"dataframe_split": split}).status_code == 401
    bad = httpx.post(base + "/invocations", json={"rows": []}, headers=auth(project))
    assert bad.status_code == 400


def test_metrics_are_exposed_and_scraped_by_prometheus(up, project):
    base = up["endpoints"][MODEL]["url"]
    assert "shipway_requests_total" in httpx.get(base + "/metrics").text
    query = up["observability"]["metricsUrl"] + "/api/v1/query"
    deadline = time.monotonic() + 60
    result = []
    while time.monotonic() < deadline:
        result = httpx.get(query, params={"query": 'up{job="shipway-endpoints"}'}).json()["data"]["result"]
        if result and result[0]["value"][1] == "1":
            break
        time.sleep(1)
    assert [(r["metric"]["model"], r["value"][1]) for r in result] == [(MODEL, "1")]


def test_drift_gauge_moves_and_the_drift_alert_fires_on_shifted_traffic(up, project):
    base = up["endpoints"][MODEL]["url"]
    prom = up["observability"]["metricsUrl"]
    split = sample_request(1)["dataframe_split"]
    # Petals far larger than anything in training: a real covariate shift.
    shifted = [[5.8, 2.7, 9.5, 4.0]] * 100
    with httpx.Client(headers=auth(project), timeout=10) as client:
        for _ in range(8):
            assert client.post(base + "/invocations", json={"dataframe_split": {
                "columns": split["columns"], "data": shifted}}).status_code == 200
    psi = 0.0
    firing: list = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not firing:
        result = httpx.get(prom + "/api/v1/query", params={
            "query": f'max(shipway_feature_psi{{model="{MODEL}",feature="petal_length"}})'}).json()["data"]["result"]
        psi = float(result[0]["value"][1]) if result else 0.0
        alerts = httpx.get(prom + "/api/v1/alerts").json()["data"]["alerts"]
        firing = [a for a in alerts if a["labels"]["alertname"] == "ShipwayFeatureDrift" and a["state"] == "firing"]
        time.sleep(3)
    assert psi > 0.2
    assert {a["labels"]["feature"] for a in firing} >= {"petal_length"}
    assert firing[0]["annotations"]["runbook_url"] == "docs/runbooks/ShipwayFeatureDrift.md"


def test_request_trace_is_found_in_jaeger_by_its_id(up, project):
    base = up["endpoints"][MODEL]["url"]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**auth(project), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    resp = httpx.post(base + "/invocations", json=sample_request(1), headers=headers)
    assert resp.headers["X-Trace-Id"] == trace_id
    deadline = time.monotonic() + 60
    spans: list = []
    while time.monotonic() < deadline and not spans:
        found = httpx.get(f"{up['observability']['tracesUrl']}/api/traces/{trace_id}")
        if found.status_code == 200:
            spans = [s for t in found.json()["data"] for s in t["spans"]]
        time.sleep(1)
    assert spans, "trace never reached Jaeger"
    tags = {t["key"]: t["value"] for t in spans[0]["tags"]}
    assert tags["shipway.model.name"] == MODEL
    assert tags["http.response.status_code"] == 200


def test_api_key_stays_out_of_state_argv_and_logs(up, project):
    key_file = Path(up["endpoints"][MODEL]["apiKeyRef"])
    assert key_file.read_text() == project.api_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    state = project.pulumi("stack", "export").stdout
    assert project.api_key not in state
    for res in _resources(project):
        pid = (res.get("outputs") or {}).get("pid")
        if pid:
            assert project.api_key not in " ".join(process.cmdline(pid))
    for log in (project.data_dir / project.stack).rglob("*.log"):
        assert project.api_key not in log.read_text(errors="replace"), log


def test_second_up_changes_nothing(up, project):
    out = project.pulumi("preview", "--expect-no-changes", "--json")
    assert {s["op"] for s in json.loads(out.stdout)["steps"]} == {"same"}
    assert register(project, "baseline") == 1  # no duplicate registration


def test_pin_change_hot_swaps_without_a_failed_request(up, project):
    base = up["endpoints"][MODEL]["url"]
    v2 = register(project, "forest")
    assert v2 == 2
    project.pin(MODEL, v2)
    stop = threading.Event()
    results: Counter[str] = Counter()
    versions: set[int] = set()

    def load() -> None:
        payload = sample_request(1)
        with httpx.Client(headers=auth(project), timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(base + "/invocations", json=payload)
                    results[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    results[type(exc).__name__] += 1
                versions.add(client.get(base + "/version").json()["model_version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        project.pulumi("up", "--yes")
    finally:
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(30)
    assert results["200"] > 50
    assert set(results) == {"200"}, results
    assert versions == {1, 2}
    assert httpx.get(base + "/version").json()["model_version"] == 2
    assert project.outputs()["endpoints"][MODEL]["version"] == 2


def test_missing_version_stops_the_run_and_nothing_changes(up, project):
    from shipway_core import registry_rest as rest

    base = up["endpoints"][MODEL]["url"]
    before = _managed(project)
    project.pin(MODEL, 99)
    try:
        out = project.pulumi("up", "--yes", check=False)
        assert out.returncode != 0
        assert (f"model '{MODEL}' version 99 does not exist in the registry at {project.tracking_uri} "
                "(registered versions: 1, 2)") in out.stdout + out.stderr
        assert httpx.get(base + "/version").json()["model_version"] == 2
        assert rest.get_alias(project.tracking_uri, MODEL, "local") == 2
        after = _managed(project)
        assert sorted(after) == sorted(before)
        changed = {urn.rsplit("::", 1)[-1]: sorted(k for i in (0, 1) for k in set(after[urn][i]) | set(before[urn][i])
                                                   if after[urn][i].get(k) != before[urn][i].get(k))
                   for urn in after if after[urn] != before[urn]}
        assert changed == {}
    finally:
        project.pin(MODEL, 2)


def _status(project, kind: str, model: str | None = None) -> dict:
    data = project.data_dir / project.stack
    path = (data / "endpoints" / model / "InferenceEndpoint.status.json") if model else next(
        data.rglob(f"{kind}.status.json"))
    return json.loads(path.read_text())


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


def test_every_process_the_stack_starts_has_a_minimal_environment(up, project):
    telemetry_off = {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}  # no usage reports to MLflow's vendor
    allowed = set(process.INHERITED_ENV) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION"} | telemetry_off
    assert any(k.startswith("PULUMI_") for k in project.env)  # the engine itself has them
    kinds = set()
    for res in _resources(project):
        outputs = res.get("outputs") or {}
        if not res.get("custom") or not outputs.get("pid"):
            continue  # components re-export their process's pid; look at each process once
        kinds.add(outputs["shipwayKind"])
        pid = outputs["pid"]
        server = json.loads((Path(outputs["dataDir"]) / f"{outputs['shipwayKind']}.status.json").read_text())["pid"]
        members = _group(int(pid))  # the supervisor, the server, and any workers it forked
        assert {int(pid), server} <= set(members), res["urn"]
        for member in members:
            raw = Path(f"/proc/{member}/environ").read_bytes()
            names = {item.split(b"=", 1)[0].decode() for item in raw.split(b"\0") if item}
            assert not {n for n in names if n.startswith("PULUMI_")}, (res["urn"], member)
            assert project.env["PULUMI_CONFIG_PASSPHRASE"].encode() not in raw
            if member in (int(pid), server):
                # What we start gets exactly the explicit environment; workers a server forks
                # may add their own settings (mlflow does), never ours.
                assert names <= allowed, (res["urn"], member, names - allowed)
                assert b"MLFLOW_DISABLE_TELEMETRY=true" in raw.split(b"\0"), (res["urn"], member)
    assert kinds == {"TrackingServer", "InferenceEndpoint", "Prometheus", "Alertmanager", "AlertSink", "Jaeger",
                     "DeliveryMetrics", "LogStore", "Collector"}


def test_registry_db_logs_and_request_log_are_private(up, project):
    data = project.data_dir / project.stack
    for path in (data / "mlflow" / "mlflow.db", data / "endpoints" / MODEL / "serving.log",
                 data / "endpoints" / MODEL / "requests.jsonl", data / "mlflow" / "mlflow-server.log"):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_fired_alerts_reach_the_local_receiver_and_shipway_alerts_lists_them(up, project):
    from typer.testing import CliRunner

    from shipway.cli import app

    sink = project.data_dir / project.stack / "alerts" / "alerts.jsonl"
    deadline = time.monotonic() + 120
    lines: list = []
    while time.monotonic() < deadline and not lines:
        lines = [json.loads(x) for x in sink.read_text().splitlines()] if sink.exists() else []
        lines = [x for x in lines if x["alertname"] == "ShipwayFeatureDrift" and x["status"] == "firing"]
        time.sleep(2)
    assert lines and lines[0]["labels"]["model"] == MODEL
    out = CliRunner().invoke(app, ["alerts", "--file", str(sink), "--output", "json"])
    assert out.exit_code == 0, out.output
    assert "ShipwayFeatureDrift" in {a["alertname"] for a in json.loads(out.stdout)}


def test_a_crashed_server_is_restarted_by_its_supervisor_and_refresh_converges(up, project):
    base = up["endpoints"][MODEL]["url"]
    before = _status(project, "InferenceEndpoint", MODEL)
    os.kill(int(before["pid"]), 9)
    started = time.monotonic()
    deadline = started + 60
    while time.monotonic() < deadline and not process.http_ok(base + "/ready"):
        time.sleep(0.1)
    assert process.http_ok(base + "/ready"), "not restarted within 60 s"
    after = _status(project, "InferenceEndpoint", MODEL)
    assert after["restarts"] == before["restarts"] + 1 and after["pid"] != before["pid"]
    assert httpx.get(base + "/version").json()["model_version"] == 2
    prom = up["observability"]["metricsUrl"]
    deadline = time.monotonic() + 60
    value = None
    while time.monotonic() < deadline and value != "1":
        result = httpx.get(prom + "/api/v1/query", params={
            "query": f'shipway_process_restarts_total{{process="InferenceEndpoint/{MODEL}"}}'}).json()
        value = result["data"]["result"][0]["value"][1] if result["data"]["result"] else None
        time.sleep(2)
    assert value == str(after["restarts"])
    project.pulumi("refresh", "--yes")
    assert next(r for r in _resources(project) if _is_endpoint(r))["outputs"]["alive"] is True
    out = project.pulumi("preview", "--expect-no-changes", "--json")
    assert {s["op"] for s in json.loads(out.stdout)["steps"]} == {"same"}


def test_refresh_notices_a_killed_supervisor_and_up_restarts_it(up, project):
    base = up["endpoints"][MODEL]["url"]
    pid = next(int(r["outputs"]["pid"]) for r in _resources(project) if _is_endpoint(r))
    os.kill(pid, 9)
    time.sleep(1)
    project.pulumi("refresh", "--yes")
    endpoint = next(r for r in _resources(project) if _is_endpoint(r))
    assert endpoint["outputs"]["alive"] is False
    project.pulumi("up", "--yes")
    assert httpx.get(base + "/ready").status_code == 200
    assert httpx.get(base + "/version").json()["model_version"] == 2


def test_destroy_stops_everything_and_leaves_no_listener(up, project):
    ports = sorted(project.ports.values()) + [project.ports["jaegerQuery"] + 1]
    project.pulumi("destroy", "--yes")
    for port in ports:
        assert process.port_free("127.0.0.1", port), port
