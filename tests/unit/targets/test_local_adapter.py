"""The local adapter's rollback decision: firing alerts the stack's Alertmanager holds for the model.

A stand-in Alertmanager (its /api/v2/alerts JSON shape) runs on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from shipway.audit import AuditLog
from shipway.targets import AdapterContext, adapter_for
from shipway_core.config import load_stack_file
from shipway_core.outputs import PlatformOutputs
from tests.support.threads import serve_in_thread

ROOT = Path(__file__).resolve().parents[3]
MODEL = "iris-classifier"


class Alertmanager:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.filters: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
                url = urlparse(self.path)
                outer.filters += parse_qs(url.query).get("filter", [])
                body = json.dumps(outer.alerts).encode() if url.path == "/api/v2/alerts" else b"[]"
                self.send_response(200 if url.path == "/api/v2/alerts" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def alertmanager() -> Iterator[Alertmanager]:
    am = Alertmanager()
    serve_in_thread(am.server)
    yield am
    am.server.shutdown()


def _adapter(tmp_path: Path, alerts_url: str) -> Any:
    cfg = load_stack_file(ROOT / "stacks" / "Pulumi.local.yaml")
    outputs = PlatformOutputs.from_exports({
        "cloud": "local", "environment": "local", "trackingUri": "http://127.0.0.1:1",
        "registryUri": "http://127.0.0.1:1", "observability": {"alertsUrl": alerts_url},
        "endpoints": {MODEL: {"url": "http://127.0.0.1:1", "version": cfg.models[MODEL].version,
                              "status": "http://127.0.0.1:1"}}})
    audit = AuditLog(tmp_path / "audit.jsonl")
    for version in (3, cfg.models[MODEL].version):  # 3 verified before the current pin
        audit.append(actor="a", action="verify", env="local", model=MODEL, to_version=version, outcome="ok")
    return adapter_for(outputs, cfg, AdapterContext(root=tmp_path, registry_factory=lambda _u: None,  # type: ignore
                                                    audit=audit))


def test_a_firing_alert_of_the_model_decides_a_rollback(tmp_path: Path, alertmanager: Alertmanager) -> None:
    adapter = _adapter(tmp_path, alertmanager.url)
    alertmanager.alerts = [{"labels": {"alertname": "ShipwayErrorBudgetBurn", "model": MODEL},
                            "status": {"state": "suppressed"}}]
    quiet = adapter.rollback_decision(MODEL)
    assert (quiet.rollback, quiet.reason) == (False, "1 guardrail alarms, none firing")
    alertmanager.alerts.append({"labels": {"alertname": "ShipwayFeatureDrift", "model": MODEL},
                                "status": {"state": "active"}})
    firing = adapter.rollback_decision(MODEL)
    assert firing.rollback is True and firing.to_version == 3
    assert firing.reason == "alarm firing: ShipwayFeatureDrift (drift); roll back to version 3"
    assert alertmanager.filters[-1] == f'model="{MODEL}"'


def test_an_unreachable_alertmanager_decides_nothing_and_says_why(tmp_path: Path) -> None:
    decision = _adapter(tmp_path, "http://127.0.0.1:9").rollback_decision(MODEL)
    assert decision.rollback is False and decision.reason.startswith("cannot read alerts from http://127.0.0.1:9")
