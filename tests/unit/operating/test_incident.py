"""Incident open -> snapshot -> close through the CLI, against local HTTP stand-ins for
Prometheus, Alertmanager, Jaeger and the endpoint, with a real audit trail and log files."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway import audit as audit_mod
from shipway.audit import AuditLog
from shipway.cli import app
from shipway.promotion import Services
from tests.unit.operating.observability_stub import ALERT_STARTED, observability_stub

STACK = """config:
  shipway:cloud: local
  shipway:environment: local
  shipway:owner: ml-platform
  shipway:costCenter: cc-0000-dev
  shipway:dataClassification: internal
  shipway:models:
    iris:
      version: 3
  shipway:slo:
    availability: 0.99
    latencyP99Ms: 250
"""


@dataclass
class FakeEngine:
    """The engine slice the CLI uses: stack outputs and the repo root."""

    root: Path
    exports: dict[str, Any] = field(default_factory=dict)

    def stack_outputs(self, env: str) -> dict[str, Any]:
        return self.exports

    def repo_root(self) -> Path:
        return self.root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exports(base: str, data: Path, alerts_url: str | None = None) -> dict[str, Any]:
    return {"cloud": "local", "environment": "local", "trackingUri": base, "registryUri": base,
            "endpoints": {"iris": {"url": f"{base}/invocations", "version": 3, "status": base,
                                   "apiKeyRef": str(data / "api-key"), "requestLog": str(data / "requests.jsonl")}},
            "observability": {"metricsUrl": base, "alertsUrl": alerts_url or base, "tracesUrl": base}}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeEngine, Services, Path]]:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text(STACK)
    data = tmp_path / ".shipway" / "local" / "local" / "endpoints" / "iris"
    data.mkdir(parents=True)
    (data / "serving.log").write_text(
        '{"level": "info", "event": "startup"}\n'
        '{"ts": "2026-03-02T09:00:01Z", "level": "error", "event": "model_error", "trace_id": "ab12"}\n')
    sink = tmp_path / ".shipway" / "local" / "local" / "alerts"
    sink.mkdir(parents=True)
    (sink / "alerts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"received_at": "2026-03-02T08:40:00+00:00", "status": "firing", "alertname": "ShipwayLatencyBudgetBurn",
         "labels": {"alertname": "ShipwayLatencyBudgetBurn", "model": "iris"}, "ends_at": None},
        {"received_at": "2026-03-02T08:46:00+00:00", "status": "resolved", "alertname": "ShipwayLatencyBudgetBurn",
         "labels": {"alertname": "ShipwayLatencyBudgetBurn", "model": "iris"}, "ends_at": "2026-03-02T08:45:30Z"},
        {"received_at": "2026-03-02T08:47:00+00:00", "status": "firing", "alertname": "ShipwayFeatureDrift",
         "labels": {"alertname": "ShipwayFeatureDrift", "model": "other"}, "ends_at": None})))
    (data / "requests.jsonl").write_text("".join(
        json.dumps({"request_id": str(i), "predictions": [0]}) + "\n" for i in range(80)))
    monkeypatch.setenv(audit_mod.KEY_ENV, "x" * 40)
    engine = FakeEngine(tmp_path)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(actor="ci@example.org", action="promote", env="local", model="iris", from_version=2,
               to_version=3, outcome="pinned", ts="2026-03-02T08:50:00+00:00")
    services = Services(engine=engine, audit_path=tmp_path / "audit.jsonl", actor="oncall@example.org")
    yield engine, services, data


def run(services: Services, *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), obj=services)
    return result


def test_snapshot_collects_every_source_into_one_timestamped_directory(
        project: tuple[FakeEngine, Services, Path]) -> None:
    engine, services, data = project
    with observability_stub() as (base, seen):
        engine.exports = exports(base, data)
        opened = run(services, "incident", "open", "local", "--model", "iris", "--title", "5xx after v3",
                     "--output", "json")
        assert opened.exit_code == 0, opened.output
        result = run(services, "incident", "snapshot", "local", "--output", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == {}
    dest = Path(doc["snapshot"])
    assert sorted(p.name for p in dest.iterdir()) == [
        "alerts.json", "audit.json", "drift.json", "logs", "manifest.json", "pins.json", "series.json",
        "slo.json", "summary.md", "traces.json"]
    assert sorted(p.name for p in (dest / "logs").iterdir()) == [
        "iris-errors.jsonl", "iris-requests.jsonl", "iris-serving.log"]
    pins = json.loads((dest / "pins.json").read_text())
    assert pins == {"iris": {"pinned": 3, "deployed": 3, "serving": {"model_name": "iris", "model_version": 3}}}
    slo = json.loads((dest / "slo.json").read_text())["models"]["iris"]
    # burn rate = bad ratio / error budget: availability 1 - 0.99 (the stack's), latency 1 - 0.99 (default)
    assert slo["availability"] == pytest.approx({"ratio_5m": 0.02, "burn_5m": 2.0, "ratio_1h": 0.005,
                                                 "burn_1h": 0.5})
    assert slo["latency"] == pytest.approx({"ratio_5m": 0.03, "burn_5m": 3.0})
    assert slo["latency_p99_ms"] == pytest.approx(310.0)
    alerts = json.loads((dest / "alerts.json").read_text())
    assert [a["labels"]["alertname"] for a in alerts["alertmanager"]] == ["ShipwayAvailabilityBudgetBurn"]
    # The receiver's notifications, newest first, this model's only (firing and resolved).
    assert [(a["alertname"], a["status"]) for a in alerts["received"]] == [
        ("ShipwayLatencyBudgetBurn", "resolved"), ("ShipwayLatencyBudgetBurn", "firing")]
    drift = json.loads((dest / "drift.json").read_text())
    assert drift["models"]["iris"]["3"] == {"samples": 800, "features": {
        "petal_width": {"wasserstein": 0.41}, "sepal_width": {"wasserstein": 0.01, "null_rate": 0.05}}}
    assert drift["thresholds"] == {"wasserstein": 0.1, "jensen_shannon": 0.06, "null_rate": 0.03}
    traces = json.loads((dest / "traces.json").read_text())
    assert traces["errors"][0]["traceID"] == "error-trace-1"
    assert [r["to_version"] for r in json.loads((dest / "audit.json").read_text())] == [3]
    assert '"trace_id": "ab12"' in (dest / "logs" / "iris-errors.jsonl").read_text()
    assert len((dest / "logs" / "iris-requests.jsonl").read_text().splitlines()) == 50
    summary = (dest / "summary.md").read_text()
    assert "| iris | 3 | 3 | 3 |" in summary
    assert "| iris | 2 | 0.5 | 3 | - | 310 |" in summary
    assert "ShipwayAvailabilityBudgetBurn (page) model=iris" in summary
    drift_section = summary.split("## Drift", 1)[1].split("##", 1)[0]
    assert drift_section.splitlines()[2:5] == [
        "- iris v3: petal_width wasserstein 0.410 > 0.1",
        "- iris v3: sepal_width null_rate 0.050 > 0.03",
        "- iris v2: 1 effect(s) over threshold on 40 live rows (< 500): too few to judge, no alert",
    ]
    assert "sepal_length" not in summary  # PSI alone is not drift
    assert {"/api/v1/query", "/api/v1/query_range", "/api/v2/alerts", "/api/traces", "/version"} <= set(seen)


def test_a_source_that_is_down_is_reported_and_the_rest_still_collected(
        project: tuple[FakeEngine, Services, Path]) -> None:
    engine, services, data = project
    with observability_stub() as (base, _):
        engine.exports = exports(base, data, alerts_url=f"http://127.0.0.1:{free_port()}")
        result = run(services, "incident", "snapshot", "local", "--model", "iris", "--output", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc["errors"]) == ["alerts.json"] and doc["errors"]["alerts.json"].startswith("ConnectError")
    assert "slo.json" in doc["collected"] and "pins.json" in doc["collected"]
    assert "alerts.json: ConnectError" in (Path(doc["snapshot"]) / "summary.md").read_text()


def test_close_records_the_incident_and_its_timeline_and_seeds_the_review(
        project: tuple[FakeEngine, Services, Path]) -> None:
    engine, services, data = project
    with observability_stub() as (base, _):
        engine.exports = exports(base, data)
        run(services, "incident", "open", "local", "--model", "iris", "--title", "5xx after v3")
        assert run(services, "incident", "snapshot", "local").exit_code == 0
    closed = run(services, "incident", "close", "local", "--summary", "rolled back to v2", "--output", "json")
    assert closed.exit_code == 0, closed.output
    doc = json.loads(closed.stdout)
    record = AuditLog(services.audit_path).records()[-1]  # type: ignore[arg-type]
    assert record["seq"] == doc["audit_seq"] and record["action"] == "incident"
    assert (record["env"], record["model"], record["outcome"]) == ("local", "iris", "closed")
    assert record["actor"] == "oncall@example.org" and record["reason"] == "rolled back to v2"
    events = [e["event"] for e in record["details"]["timeline"]]
    assert events[0] == "alert ShipwayLatencyBudgetBurn resolved"  # at its ends_at, from the receiver
    assert events[1] == "alert ShipwayAvailabilityBudgetBurn firing (page)"  # it started before the open
    assert events[2] == "incident opened: 5xx after v3"
    assert events[-1] == "incident closed: rolled back to v2"
    assert record["details"]["timeline"][1]["ts"] == ALERT_STARTED
    assert AuditLog(services.audit_path).verify(anchors=[]).ok  # type: ignore[arg-type]
    review = Path(doc["review"]).read_text()
    assert "| 2026-03-02T08:55:00Z | alert ShipwayAvailabilityBudgetBurn firing (page) | Alertmanager |" in review
    again = run(services, "incident", "close", "local")
    assert again.exit_code == 1 and "no open incident in 'local'" in again.output


def test_one_open_incident_per_environment_and_bad_input(project: tuple[FakeEngine, Services, Path]) -> None:
    _, services, _ = project
    assert run(services, "incident", "open", "local").exit_code == 0
    second = run(services, "incident", "open", "local")
    assert second.exit_code == 1 and "is already open in 'local'" in second.output
    bad_env = run(services, "incident", "open", "staging")
    assert bad_env.exit_code == 2 and "'staging' is not an environment" in bad_env.output
    bad_model = run(services, "incident", "snapshot", "local", "--model", "Bad Name")
    assert bad_model.exit_code == 2 and "'Bad Name' is not a valid model name" in bad_model.output


def test_undeployed_stack_is_a_clear_failure(project: tuple[FakeEngine, Services, Path]) -> None:
    engine, services, _ = project
    engine.exports = {}
    result = run(services, "incident", "snapshot", "local")
    assert result.exit_code == 1 and "stack 'local' has no outputs: it is not deployed" in result.output
