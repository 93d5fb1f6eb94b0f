"""The local alert receiver, run as the real script on a free loopback port."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest

from components.local import process
from components.local.alert_sink import alert_lines

SCRIPT = process.SUPERVISOR.with_name("alert_sink.py")

PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "local",
    "alerts": [{"status": "firing", "labels": {"alertname": "ShipwayFeatureDrift", "model": "iris-classifier",
                                                "severity": "warning"},
                "annotations": {"summary": "drift"}, "startsAt": "2026-12-04T11:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z"}],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def sink(tmp_path):
    port = _free_port()
    out = tmp_path / "alerts.jsonl"
    proc = process.start([sys.executable, str(SCRIPT), "--port", str(port), "--out", str(out)], tmp_path / "log")
    try:
        process.wait_healthy(f"http://127.0.0.1:{port}/health", proc, tmp_path / "log", timeout=20)
        yield f"http://127.0.0.1:{port}", out
    finally:
        process.stop_started(proc, timeout=5)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_alertmanager_webhook_is_recorded_one_line_per_alert_in_a_0600_file(sink):
    url, out = sink
    assert _post(url + "/alerts", json.dumps(PAYLOAD).encode()) == (200, {"recorded": 1})
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert (line["alertname"], line["status"], line["labels"]["model"], line["receiver"]) == (
        "ShipwayFeatureDrift", "firing", "iris-classifier", "local")
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_bad_payload_is_a_400_naming_the_field_and_records_nothing(sink):
    url, out = sink
    status, body = _post(url + "/alerts", b'{"status": "firing"}')
    assert status == 400
    assert body["error"].startswith("alerts: missing or not a list")
    assert out.read_text() == ""


def test_sink_refuses_to_bind_anything_but_loopback(tmp_path):
    proc = process.start([sys.executable, str(SCRIPT), "--host", "0.0.0.0", "--port", "1",  # noqa: S104
                          "--out", str(tmp_path / "a")], tmp_path / "log")
    assert proc.wait(20) == 2
    time.sleep(0.1)
    assert "--host: '0.0.0.0' is not allowed" in (tmp_path / "log").read_text()


def test_alert_lines_keep_resolved_status_per_alert():
    lines = alert_lines({"status": "resolved", "alerts": [{"status": "resolved", "labels": {"alertname": "X"}}]},
                        "t")
    assert [(x["alertname"], x["status"], x["received_at"]) for x in lines] == [("X", "resolved", "t")]


def test_shipway_alerts_lists_newest_first_filters_and_prints_json(tmp_path):
    from typer.testing import CliRunner

    from shipway.cli import app

    out = tmp_path / "alerts.jsonl"
    lines = alert_lines(PAYLOAD, "2026-12-04T11:00:05+00:00") + alert_lines(
        {**PAYLOAD, "status": "resolved", "alerts": [{**PAYLOAD["alerts"][0], "status": "resolved"}]},
        "2026-12-04T11:09:00+00:00")
    out.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{half a line\n")
    result = CliRunner().invoke(app, ["alerts", "--file", str(out), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert [(a["status"], a["received_at"]) for a in json.loads(result.stdout)] == [
        ("resolved", "2026-12-04T11:09:00+00:00"), ("firing", "2026-12-04T11:00:05+00:00")]
    firing = CliRunner().invoke(app, ["alerts", "--file", str(out), "--status", "firing", "-o", "json"])
    assert [a["status"] for a in json.loads(firing.stdout)] == ["firing"]
    table = CliRunner().invoke(app, ["alerts", "--file", str(out)])
    assert "ShipwayFeatureDrift" in table.stdout and "iris-classifier" in table.stdout
    empty = CliRunner().invoke(app, ["alerts", "--file", str(tmp_path / "none.jsonl")])
    assert empty.stdout.strip() == f"no alerts recorded in {tmp_path / 'none.jsonl'}"
