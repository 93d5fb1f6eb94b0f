"""A local HTTP server answering the read APIs an incident snapshot queries (Prometheus,
Alertmanager, Jaeger query, the serving /version), with recorded requests.

It stands in for the real services in unit tests (the integration test uses the real ones); the
payloads follow each API's documented response shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from shipway_core.observability.rules import error_ratio_record, latency_record
from tests.support.threads import serve_in_thread

ALERT_STARTED = "2026-03-02T08:55:00Z"


def vector(model: str, value: float, **labels: str) -> dict[str, Any]:
    return {"metric": {"model": model, **labels}, "value": [1772440000, str(value)]}


def answer(path: str, query: dict[str, list[str]]) -> Any:
    q = query.get("query", [""])[0]
    if path == "/api/v1/query":
        result = {
            error_ratio_record("5m"): [vector("iris", 0.02)],
            error_ratio_record("1h"): [vector("iris", 0.005)],
            "model:shipway_request_slow:ratio_rate5m": [vector("iris", 0.03)],
            latency_record("p99"): [vector("iris", 0.31)],
            # PSI is not what the drift alert decides on: a large PSI alone must not show as drift
            "shipway_feature_psi": [vector("iris", 0.9, feature="sepal_length", version="3")],
            "shipway_feature_drift_effect": [
                vector("iris", 0.41, feature="petal_width", statistic="wasserstein", version="3"),
                vector("iris", 0.01, feature="sepal_width", statistic="wasserstein", version="3"),
                vector("iris", 0.05, feature="sepal_width", statistic="null_rate", version="3"),
                # a version with too few live rows: over threshold, yet the alert's guard keeps it quiet
                vector("iris", 0.7, feature="petal_width", statistic="wasserstein", version="2"),
            ],
            "shipway_drift_samples": [vector("iris", 800, version="3"), vector("iris", 40, version="2")],
        }.get(q, [])
        return {"status": "success", "data": {"resultType": "vector", "result": result}}
    if path == "/api/v1/query_range":
        values = [[1772440000 + 60 * i, "0.01"] for i in range(3)]
        return {"status": "success", "data": {"resultType": "matrix",
                                              "result": [{"metric": {"model": "iris"}, "values": values}]}}
    if path == "/api/v1/alerts":
        return {"status": "success", "data": {"alerts": [
            {"labels": {"alertname": "ShipwayAvailabilityBudgetBurn", "model": "iris"}, "state": "firing"}]}}
    if path == "/api/v2/alerts":
        return [{"labels": {"alertname": "ShipwayAvailabilityBudgetBurn", "model": "iris", "severity": "page"},
                 "startsAt": ALERT_STARTED, "status": {"state": "active"}},
                {"labels": {"alertname": "ShipwayFeatureDrift", "model": "other", "severity": "ticket"},
                 "startsAt": ALERT_STARTED, "status": {"state": "active"}}]
    if path == "/api/traces":
        tags = json.loads(query.get("tags", ["{}"])[0])
        kind = "error" if tags.get("error") == "true" else "ok"
        return {"data": [{"traceID": f"{kind}-trace-1", "spans": []}]}
    if path == "/version":
        return {"model_name": "iris", "model_version": 3}
    return None


@contextmanager
def observability_stub() -> Iterator[tuple[str, list[str]]]:
    """Serve on a free 127.0.0.1 port; yields (base URL, request paths seen)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlparse(self.path)
            seen.append(url.path)
            body = answer(url.path, parse_qs(url.query))
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
