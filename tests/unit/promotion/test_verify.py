"""Deployment verification against a fake endpoint (MockTransport) and a real local server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pandas as pd
import pytest

from shipway import verify
from shipway.verify import VerificationError, verify_deployment
from shipway_core.config import SloSettings
from tests.support.threads import serve_in_thread

from .conftest import MODEL, FakeEndpoint

FEATURES = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})
OFFLINE = np.array([1, 0, 1])


def run(
    endpoint: FakeEndpoint,
    *,
    version: int = 1,
    slo: SloSettings | None = None,
    features=FEATURES,
    offline=OFFLINE,
    api_key=None,
):
    return verify_deployment(
        model=MODEL,
        version=version,
        url="http://127.0.0.1:8101",
        api_key=api_key,
        features=features,
        offline=offline,
        slo=slo or SloSettings(),
        probe_seconds=0.05,
        max_probe_requests=20,
        client=endpoint.client(),
    )


def test_healthy_deployment_passes_every_check():
    endpoint = FakeEndpoint(version=1, predict=lambda f: [1, 0, 1][: len(f)] if len(f) == 3 else [1])
    result = run(endpoint)
    assert result.ok, result.reason
    assert [c.name for c in result.checks] == ["version", "smoke", "slo"]
    assert result.checks[0].message == f"endpoint serves version 1 of '{MODEL}'"
    assert result.checks[1].message == "3 smoke predictions match offline predictions of version 1"
    assert ("POST", "/invocations") in endpoint.requests


def test_wrong_served_version_fails_and_skips_the_rest():
    endpoint = FakeEndpoint(version=2)
    result = run(endpoint)
    assert result.reason == f"endpoint serves version 2 of '{MODEL}', expected 1"
    assert [c.message for c in result.checks[1:]] == ["skipped: endpoint did not report its version"] * 2
    assert ("POST", "/invocations") not in endpoint.requests


def test_smoke_mismatch_names_the_first_bad_row():
    result = run(FakeEndpoint(version=1, predict=lambda f: [1, 2, 1][: len(f)]))
    assert result.checks[1].message == (
        "1 of 3 smoke predictions differ from offline predictions of version 1 "
        "(first: row 1, endpoint 2 vs offline 0)"
    )


def test_numeric_predictions_match_within_tolerance():
    endpoint = FakeEndpoint(version=1, predict=lambda f: [0.1 + 1e-9] * len(f))
    result = run(endpoint, offline=np.array([0.1, 0.1, 0.1]))
    assert result.checks[1].ok


def test_error_rate_above_the_slo_fails():
    endpoint = FakeEndpoint(version=1, predict=lambda f: [1, 0, 1] if len(f) == 3 else [1])
    calls = {"n": 0}

    def flaky(request):
        if (
            request.url.path == "/invocations"
            and len(json.loads(request.content)["dataframe_split"]["data"]) == 1
        ):
            calls["n"] += 1
            if calls["n"] % 2 == 0:
                return httpx.Response(503)
        return endpoint.handle(request)

    result = verify_deployment(
        model=MODEL,
        version=1,
        url="http://127.0.0.1:8101",
        api_key=None,
        features=FEATURES,
        offline=OFFLINE,
        slo=SloSettings(),
        probe_seconds=5.0,
        max_probe_requests=10,
        client=httpx.Client(transport=httpx.MockTransport(flaky)),
    )
    slo = result.checks[2]
    assert slo.data["requests"] == 10 and slo.data["errors"] == 5
    assert slo.message == "probe: error rate 0.5000 > allowed 0.0100 (5 of 10)"


def test_latency_above_the_slo_fails():
    endpoint = FakeEndpoint(version=1, predict=lambda f: [1, 0, 1] if len(f) == 3 else [1])
    result = run(endpoint, slo=SloSettings(latency_p99_ms=1e-9))
    assert not result.ok
    assert result.checks[2].message.startswith("probe: p99 latency ")
    assert result.checks[2].message.endswith(" ms > allowed 0.0 ms")


def test_api_key_is_sent_as_bearer_token():
    endpoint = FakeEndpoint(version=1, api_key="s3cret", predict=lambda f: [1, 0, 1] if len(f) == 3 else [1])
    assert run(endpoint, api_key="s3cret").ok
    denied = run(endpoint, api_key="wrong")
    assert denied.checks[0].message.startswith("GET /version failed: Client error '401 Unauthorized'")


def test_without_golden_rows_smoke_and_probe_say_they_were_skipped():
    result = run(FakeEndpoint(version=1), features=None, offline=None)
    assert result.ok
    assert result.checks[1].message == "skipped: no golden dataset for this version"


def test_only_loopback_endpoints_are_probed():
    with pytest.raises(VerificationError) as err:
        verify_deployment(
            model=MODEL,
            version=1,
            url="https://models.example.com",
            api_key=None,
            features=None,
            offline=None,
            slo=SloSettings(),
        )
    assert str(err.value) == (
        "endpoint url: 'https://models.example.com' is not valid; verification only "
        "probes loopback hosts (127.0.0.1, ::1, localhost)"
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"version": 3}, 3),
        ({"version": "3"}, 3),
        ({"model_version": 4}, 4),
        ({"models": {MODEL: {"version": 5}}}, 5),
        ({"model_name": MODEL, "model_version": 6, "environment": "dev"}, 6),
        ({"model_name": "other-model", "model_version": 6}, None),
        ({"version": True}, None),
        ([], None),
        ({}, None),
    ],
)
def test_served_version_shapes(payload, expected):
    assert verify.served_version(payload, MODEL) == expected


def test_p99_is_nearest_rank():
    assert verify.p99([float(i) for i in range(1, 101)]) == 99.0
    assert verify.p99([5.0]) == 5.0
    assert verify.p99([]) == 0.0


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_args):  # keep test output clean
        pass

    def _send(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server API
        self._send({"version": 1} if self.path == "/version" else {"status": "ok"})

    def do_POST(self):  # noqa: N802
        split = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["dataframe_split"]
        self._send({"predictions": [1 if row[0] > 1.5 else 0 for row in split["data"]]})


def test_real_http_server_on_loopback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    serve_in_thread(server)
    try:
        result = verify_deployment(
            model=MODEL,
            version=1,
            url=f"http://127.0.0.1:{server.server_port}",
            api_key=None,
            features=FEATURES,
            offline=np.array([0, 1, 1]),
            # the loopback path is under test, not latency: with 20 requests p99 is the slowest one, and
            # one request stalled by a busy 2-core machine (the whole suite runs beside it) is not a bug
            slo=SloSettings(latency_p99_ms=10_000),
            probe_seconds=0.1,
            max_probe_requests=20,
        )
        status = verify.probe_status(f"http://127.0.0.1:{server.server_port}", MODEL)
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, result.reason
    assert result.checks[2].data["errors"] == 0
    assert status == {"health": "up", "serving_version": 1, "detail": ""}


def test_probe_status_reports_down_for_a_closed_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_port
    server.server_close()
    assert verify.probe_status(f"http://127.0.0.1:{port}", MODEL)["health"] == "down"


def test_a_two_worker_probe_sends_exactly_its_size_and_counts_every_workers_errors():
    rows = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    seen: list[tuple[int, float]] = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=5)  # the first two requests only finish once both workers sent one

    def send(frame: pd.DataFrame) -> list:
        with lock:
            seen.append((threading.get_ident(), float(frame["x"].iloc[0])))
            first_two = len(seen) <= 2
        if first_two:
            both.wait()
        if frame["x"].iloc[0] == 3.0:
            raise RuntimeError("500")
        return [0]

    check = verify.slo_check(send, rows, SloSettings(max_error_rate=0.5), probe_seconds=30, max_requests=40,
                             workers=2)
    assert check.data["requests"] == len(seen) == 40
    assert check.data["errors"] == 10  # every fourth row fails, whichever worker sent it
    assert len({ident for ident, _ in seen}) == 2
    assert sorted(x for _, x in seen) == sorted([0.0, 1.0, 2.0, 3.0] * 10)
