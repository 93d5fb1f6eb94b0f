"""The serving ASGI app in-process, against models loaded from a real MLflow sqlite registry."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from serving_support import DIABETES, IRIS, IRIS_COLUMNS, Registry

from shipway.serving.app import ServingApp
from shipway.serving.config import ServingConfig
from shipway.serving.model import LoadedModel, synthetic_batch
from shipway.serving.schema import ColumnSpec, InputSchema

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOG_FIELDS = {"ts", "level", "request_id", "trace_id", "span_id", "route", "method", "status",
              "duration_ms", "model", "version", "rows"}


class Client:
    """A synchronous client driving the ASGI app in-process (no lifespan, no sockets)."""

    def __init__(self, app: ServingApp):
        self._app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@dataclass
class Harness:
    """An app, a client for it, and what it wrote."""

    app: ServingApp
    client: Client
    out: io.BytesIO
    spans: InMemorySpanExporter
    tmp: Path

    def post(self, doc: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
        body = raw if raw is not None else json.dumps(doc).encode()
        return self.client.post("/invocations", content=body, headers=AUTH if headers is None else headers)

    def lines(self) -> list[dict[str, Any]]:
        self.app.log_sink.flush()
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "request_id" in line and "event" not in line]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.app.metrics.registry.get_sample_value(name, labels)

    def write_pin(self, name: str, version: int, registry: Registry) -> None:
        registry.pin_file(Path(self.app.config.pin_file), name, version)


@pytest.fixture
def make_app(registry: Registry, tmp_path: Path, model_loader: Callable[..., Any]) -> Iterator[Callable[..., Harness]]:
    made: list[ServingApp] = []

    def make(name: str = IRIS, version: int = 1, *, load: bool = True, request_log: bool = False,
             loader: Callable[..., Any] | None = None, **settings: Any) -> Harness:
        pin = registry.pin_file(tmp_path / "pin.json", name, version)
        key = tmp_path / "api-key"
        key.write_text(KEY + "\n")
        key.chmod(0o600)
        settings.setdefault("drift_refresh_requests", 1)
        config = ServingConfig(pin_file=str(pin), api_key_file=str(key), environment="test",
                               request_log=str(tmp_path / "requests.jsonl") if request_log else None, **settings)
        out = io.BytesIO()
        spans = InMemorySpanExporter()
        app = ServingApp(config, log_stream=out, loader=loader or model_loader,
                         span_processors=[SimpleSpanProcessor(spans)], process_metrics=False)
        made.append(app)
        if load:
            assert app.reload() is True
        return Harness(app=app, client=Client(app), out=out, spans=spans, tmp=tmp_path)

    yield make
    for app in made:
        app.close()


def iris_rows(registry: Registry, idx: list[int]) -> Any:
    return registry.iris_x.iloc[idx]


# ----------------------------------------------------------------- predictions


def test_every_payload_format_returns_what_the_model_predicts(make_app: Callable[..., Harness],
                                                               registry: Registry) -> None:
    h = make_app()
    x = iris_rows(registry, [0, 50, 100, 120, 70])
    expected = registry.iris_model.predict(x).tolist()
    assert len(set(expected)) == 3  # the rows cover every class, so a wrong column order would show
    payloads = [
        {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}},
        {"dataframe_split": {"columns": list(x.columns[::-1]), "data": x[x.columns[::-1]].to_numpy().tolist()}},
        {"dataframe_records": x.to_dict(orient="records")},
        {"inputs": x.to_numpy().tolist()},
        {"inputs": {c: x[c].tolist() for c in x.columns}},
    ]
    for doc in payloads:
        response = h.post(doc)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        assert response.headers["content-type"] == "application/json"


def test_regressor_predictions_and_value_histogram(make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app(DIABETES, 1)
    x = registry.diabetes_x.iloc[:7]
    response = h.post({"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}})
    expected = registry.diabetes_model.predict(x)
    assert response.status_code == 200
    assert response.json()["predictions"] == pytest.approx(expected.tolist())
    labels = {"model": DIABETES, "version": "1"}
    assert h.sample("shipway_prediction_value_count", **labels) == 7
    assert h.sample("shipway_prediction_value_sum", **labels) == pytest.approx(float(expected.sum()))
    assert h.sample("shipway_predictions_total", **labels, **{"class": "0"}) is None


def test_large_batches_go_through_the_threadpool_with_the_same_result(make_app: Callable[..., Harness],
                                                                      registry: Registry) -> None:
    h = make_app(threadpool_rows=2)
    x = iris_rows(registry, list(range(0, 150, 10)))
    response = h.post({"inputs": x.to_numpy().tolist()})
    assert response.json() == {"predictions": registry.iris_model.predict(x).tolist()}


def test_model_errors_are_500_with_model_error_kind(make_app: Callable[..., Harness]) -> None:
    schema = InputSchema(columns=tuple(ColumnSpec(c, "double") for c in IRIS_COLUMNS))

    def broken(batch: Any) -> Any:
        raise RuntimeError("weights missing")

    def loader(pin: Any, log: Any = None) -> LoadedModel:
        return LoadedModel(name=pin.model_name, version=pin.model_version, schema=schema, flavor="pyfunc",
                           is_classifier=True, predict_fn=broken, warm_batch=synthetic_batch(schema))

    h = make_app(loader=loader)
    response = h.post({"inputs": [[1, 2, 3, 4]]})
    assert response.status_code == 500
    assert response.json() == {"error_code": "MODEL_ERROR",
                               "message": "the model failed to predict: RuntimeError: weights missing"}
    assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="model_error") == 1
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="5xx") == 1
    assert h.events("model_error")[0]["error"] == "RuntimeError: weights missing"


# ----------------------------------------------------------------- auth and bad requests

AUTH_MESSAGE = "missing or invalid API key; send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": f"Basic {KEY}"}, 401),
    ({"X-API-Key": KEY + "x"}, 401),
    ({"Authorization": f"Bearer {KEY}"}, 200),
    ({"Authorization": f"bearer {KEY}"}, 200),
    ({"X-API-Key": KEY}, 200),
])
def test_api_key_is_required_on_invocations(make_app: Callable[..., Harness], headers: dict[str, str],
                                            status: int) -> None:
    h = make_app()
    response = h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"error_code": "UNAUTHORIZED", "message": AUTH_MESSAGE}
        assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="unauthorized") == 1
    assert h.client.get("/health").status_code == 200  # probes and scrapes need no key
    assert h.client.get("/metrics").status_code == 200


def test_key_never_appears_in_logs(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]})
    h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers={"X-API-Key": "nope"})
    h.app.log_sink.flush()
    assert KEY.encode() not in h.out.getvalue()


COLS = "[sepal_length, sepal_width, petal_length, petal_width]"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length"], "data": [[1, 2, 3]]}}',
     f"missing column 'petal_width'; the model expects the columns {COLS}"),
    (b'{"inputs": [[1, 2, "3", 4]]}',
     "column 'petal_length' row 0: expected double (a JSON number or null), got string \"3\""),
    (b'{"data": [[1, 2, 3, 4]]}',
     "unknown payload key 'data'; expected exactly one of: dataframe_split, dataframe_records, inputs, instances"),
    (b'{"inputs": [[1, 2, 3, 4]',
     "request body is not valid JSON: unexpected end of data: line 1 column 25 (char 24)"),
    (b'{"inputs": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]}',
     "payload has 4 rows, more than the limit of 3; split it into smaller requests"),
])
def test_malformed_requests_are_400_naming_the_problem(make_app: Callable[..., Harness], body: bytes,
                                                       message: str) -> None:
    h = make_app(max_rows=3)
    response = h.post(None, raw=body)
    assert response.status_code == 400
    assert response.json() == {"error_code": "BAD_REQUEST", "message": message}
    assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="bad_request") == 1
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") == 1


def test_oversized_body_is_413(make_app: Callable[..., Harness]) -> None:
    h = make_app(max_body_bytes=64)
    response = h.post({"inputs": [[1.0, 2.0, 3.0, 4.0]] * 5})
    assert response.status_code == 413
    assert response.json() == {"error_code": "BAD_REQUEST", "message": "request body is larger than 64 bytes"}


def test_unknown_routes_and_wrong_methods(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    assert h.client.get("/invocations").json() == {
        "error_code": "METHOD_NOT_ALLOWED", "message": "/invocations only accepts POST"}
    assert h.client.get("/invocations").status_code == 405
    missing = h.client.get("/admin")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "NOT_FOUND"
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="other", status_class="4xx") == 1


# ----------------------------------------------------------------- readiness and version


def test_ready_is_503_until_a_model_is_loaded(make_app: Callable[..., Harness]) -> None:
    h = make_app(load=False)
    assert h.client.get("/health").json() == {"status": "ok"}
    ready = h.client.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {"error_code": "NOT_READY", "message": f"model {IRIS} version 1 is not loaded yet"}
    assert h.client.get("/version").status_code == 503
    assert h.post({"inputs": [[1, 2, 3, 4]]}).status_code == 503
    assert h.sample("shipway_requests_total", model=IRIS, version="none", route="/ready", status_class="5xx") == 1
    assert h.app.reload() is True
    assert h.client.get("/ready").json() == {"status": "ready"}


def test_version_reports_the_served_pin(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    body = h.client.get("/version").json()
    assert set(body) == {"model_name", "model_version", "loaded_at", "environment"}
    assert (body["model_name"], body["model_version"], body["environment"]) == (IRIS, 1, "test")
    assert datetime.fromisoformat(body["loaded_at"]).tzinfo is not None


# ----------------------------------------------------------------- metrics, logs, traces


def test_metrics_after_n_requests(make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    x = iris_rows(registry, [0, 60, 110, 120])
    for i in range(3):
        h.post({"inputs": [x.iloc[i].tolist()]})
    h.post({"inputs": x.iloc[2:4].to_numpy().tolist()})
    classes = registry.iris_model.predict(x.iloc[[0, 1, 2, 2, 3]]).astype(str).tolist()
    v1 = {"model": IRIS, "version": "1"}
    for label in set(classes):
        assert h.sample("shipway_predictions_total", **v1, **{"class": label}) == classes.count(label)
    assert h.sample("shipway_requests_total", **v1, route="/invocations", status_class="2xx") == 4
    assert h.sample("shipway_request_duration_seconds_count", **v1, route="/invocations") == 4
    assert h.sample("shipway_request_duration_seconds_bucket", **v1, route="/invocations", le="5.0") == 4
    assert h.sample("shipway_model_info", **v1, environment="test") == 1
    assert h.sample("shipway_inflight_requests", model=IRIS) == 0
    assert h.sample("shipway_errors_total", **v1, kind="bad_request") is None
    text = h.client.get("/metrics").text
    for line in [
        'shipway_requests_total{model="iris-classifier",route="/invocations",status_class="2xx",version="1"} 4.0',
        'shipway_model_info{environment="test",model="iris-classifier",version="1"} 1.0',
        'shipway_request_duration_seconds_bucket{le="0.0005",model="iris-classifier",route="/invocations",'
        'version="1"}',
        'shipway_drift_samples{model="iris-classifier",version="1"} 5.0',
    ]:
        assert line in text
    assert "# TYPE shipway_feature_psi gauge" in text
    assert "# TYPE shipway_prediction_value histogram" in text


def test_one_json_log_line_per_request_with_trace_ids(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    response = h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers={
        **AUTH, "X-Request-Id": "req-123", "traceparent": f"00-{trace_id}-{parent}-01"})
    assert response.headers["x-request-id"] == "req-123"
    assert response.headers["x-trace-id"] == trace_id
    [line] = h.requests()
    assert set(line) == LOG_FIELDS
    assert line["request_id"] == "req-123"
    assert line["trace_id"] == trace_id
    assert (line["route"], line["status"], line["model"], line["version"], line["rows"]) == (
        "/invocations", 200, IRIS, 1, 1)
    assert line["level"] == "info"
    [span] = h.spans.get_finished_spans()
    assert format(span.context.span_id, "016x") == line["span_id"]
    assert format(span.parent.span_id, "016x") == parent
    assert span.name == "POST /invocations"
    assert dict(span.attributes) == {
        "http.request.method": "POST", "url.path": "/invocations", "http.route": "/invocations",
        "http.response.status_code": 200, "server.address": "127.0.0.1", "server.port": 8080,
        "shipway.model.name": IRIS, "shipway.model.version": 1, "shipway.request.rows": 1,
    }


def test_request_ids_are_generated_when_absent(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    first = h.client.get("/health")
    second = h.client.get("/health")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.headers["x-trace-id"] != second.headers["x-trace-id"]
    assert [line["request_id"] for line in h.requests()] == [
        first.headers["x-request-id"], second.headers["x-request-id"]]


def test_request_log_has_inputs_and_predictions_per_request(make_app: Callable[..., Harness]) -> None:
    h = make_app(request_log=True)
    h.post({"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                                   "petal_width": 0.2}]}, headers={**AUTH, "X-Request-Id": "r1"})
    h.post({"inputs": [[6.5, 3.0, 5.5, 2.0], [5.1, 3.5, 1.4, 0.3]]}, headers={**AUTH, "X-Request-Id": "r2"})
    h.post({"inputs": [[1, 2, "x", 4]]}, headers={**AUTH, "X-Request-Id": "r3"})  # 400: not logged
    assert h.app.request_sink is not None
    h.app.request_sink.flush()
    path = h.tmp / "requests.jsonl"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2"]
    assert set(lines[1]) == {"ts", "request_id", "model", "version", "inputs", "predictions"}
    assert lines[1]["inputs"] == {"sepal_length": [6.5, 5.1], "sepal_width": [3.0, 3.5],
                                  "petal_length": [5.5, 1.4], "petal_width": [2.0, 0.3]}
    assert (lines[1]["model"], lines[1]["version"], len(lines[1]["predictions"])) == (IRIS, 1, 2)


def test_request_log_is_flushed_by_the_background_thread(make_app: Callable[..., Harness]) -> None:
    h = make_app(request_log=True)
    assert h.app.request_sink is not None
    h.app.request_sink.start()
    h.post({"inputs": [[6.5, 3.0, 5.5, 2.0]]})
    path = h.tmp / "requests.jsonl"
    deadline = time.monotonic() + 10
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(path.read_text().splitlines()) == 1


# ----------------------------------------------------------------- drift


def test_psi_stays_near_zero_for_training_data_and_moves_when_inputs_shift(
        make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    x = registry.iris_x
    v1 = {"model": IRIS, "version": "1"}
    h.post({"inputs": x.to_numpy().tolist()})
    assert h.sample("shipway_drift_samples", **v1) == 150
    for col in IRIS_COLUMNS:
        assert h.sample("shipway_feature_psi", **v1, feature=col) == pytest.approx(0.0, abs=1e-9)
    assert h.client.post("/drift/reset").status_code == 401
    assert h.client.post("/drift/reset", headers=AUTH).json() == {"status": "reset"}
    assert h.sample("shipway_drift_samples", **v1) == 0
    shifted = x.copy()
    shifted["petal_length"] = shifted["petal_length"] + 3 * float(np.std(x["petal_length"]))
    h.post({"inputs": shifted.to_numpy().tolist()})
    assert h.sample("shipway_feature_psi", **v1, feature="petal_length") > 1.0
    assert h.sample("shipway_feature_psi", **v1, feature="sepal_width") == pytest.approx(0.0, abs=1e-9)


def test_psi_is_refreshed_every_n_requests_not_per_request(make_app: Callable[..., Harness]) -> None:
    h = make_app(drift_refresh_requests=3, drift_refresh_seconds=3600)
    v1 = {"model": IRIS, "version": "1", "feature": "petal_length"}
    for _ in range(2):
        h.post({"inputs": [[5.0, 3.0, 50.0, 1.0]]})
    assert h.sample("shipway_feature_psi", **v1) == 0.0
    h.post({"inputs": [[5.0, 3.0, 50.0, 1.0]]})
    assert h.sample("shipway_feature_psi", **v1) > 1.0


def test_a_model_without_baseline_profile_serves_without_drift(make_app: Callable[..., Harness]) -> None:
    h = make_app(DIABETES, 1)
    assert h.post({"inputs": [[0.01, 0.02, 0.03]]}).status_code == 200
    assert h.sample("shipway_drift_samples", model=DIABETES, version="1") is None
    assert h.events("model_loaded")[0]["drift_features"] == []


# ----------------------------------------------------------------- hot swap


def test_reload_swaps_versions_and_moves_the_info_gauge(make_app: Callable[..., Harness], registry: Registry,
                                                        iris_v2: int) -> None:
    h = make_app()
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
    old = h.app.active_model
    assert old is not None
    old.inflight = 1  # a request still running on v1
    h.write_pin(IRIS, iris_v2, registry)
    swapper = threading.Thread(target=h.app.reload)
    swapper.start()
    deadline = time.monotonic() + 60
    while h.client.get("/version").json()["model_version"] != iris_v2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.client.get("/version").json()["model_version"] == iris_v2
    assert swapper.is_alive()  # still draining v1
    assert h.events("model_drained") == []
    old.inflight = 0
    swapper.join(timeout=10)
    assert not swapper.is_alive()
    assert h.events("model_drained")[0]["version"] == 1
    assert h.events("model_swapped")[0]["previous"] == 1
    assert h.sample("shipway_model_info", model=IRIS, version="1", environment="test") is None
    assert h.sample("shipway_model_info", model=IRIS, version=str(iris_v2), environment="test") == 1
    assert h.sample("shipway_feature_psi", model=IRIS, version="1", feature="petal_length") is None
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
    assert h.requests()[-1]["version"] == iris_v2


def test_failed_reload_keeps_serving_the_old_version(make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    h.write_pin(IRIS, 99, registry)
    assert h.app.reload() is False
    assert h.client.get("/version").json()["model_version"] == 1
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200
    [failure] = h.events("model_load_failed")
    assert (failure["level"], failure["version"], failure["serving"]) == ("error", 99, 1)
    assert failure["error"].startswith(f"ModelLoadError: models:/{IRIS}/99 not found in registry")
    assert h.sample("shipway_model_info", model=IRIS, version="1", environment="test") == 1


def test_invalid_pin_on_reload_is_logged_and_ignored(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    Path(h.app.config.pin_file).write_text('{"model_name": "iris-classifier", "model_version": "latest"}')
    assert h.app.reload() is False
    [event] = h.events("pin_invalid")
    assert event["error"].endswith("model_version 'latest' must be a positive integer "
                                   "(an exact registry version, not an alias)")
    assert h.client.get("/version").json()["model_version"] == 1


def test_unchanged_pin_does_not_reload(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    calls: list[Any] = []
    loader = h.app._loader
    h.app._loader = lambda pin, log=None: calls.append(pin) or loader(pin, log)
    assert h.app.reload() is True
    assert calls == []
    assert len(h.events("pin_unchanged")) == 1


# ----------------------------------------------------------------- metric contract

CONTRACT = {
    "shipway_request_duration_seconds": ("histogram", {"model", "version", "route"}),
    "shipway_requests": ("counter", {"model", "version", "route", "status_class"}),
    "shipway_errors": ("counter", {"model", "version", "kind"}),
    "shipway_predictions": ("counter", {"model", "version", "class"}),
    "shipway_prediction_value": ("histogram", {"model", "version"}),
    "shipway_model_info": ("gauge", {"model", "version", "environment"}),
    "shipway_inflight_requests": ("gauge", {"model"}),
    "shipway_feature_psi": ("gauge", {"model", "version", "feature"}),
    "shipway_drift_samples": ("gauge", {"model", "version"}),
}


def families(h: Harness) -> dict[str, tuple[str, set[str]]]:
    found: dict[str, tuple[str, set[str]]] = {}
    for family in h.app.metrics.registry.collect():
        if family.name.startswith("shipway_"):
            labels = {k for s in family.samples for k in s.labels if k != "le"}
            found[family.name] = (family.type, labels)
    return found


def test_metric_names_types_and_labels_are_exactly_the_contract(make_app: Callable[..., Harness]) -> None:
    classifier = make_app()
    classifier.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]})
    classifier.post({"nope": 1})
    regressor = make_app(DIABETES, 1)
    regressor.post({"inputs": [[0.01, 0.02, 0.03]]})
    seen = families(classifier)
    seen["shipway_prediction_value"] = families(regressor)["shipway_prediction_value"]
    assert seen == CONTRACT


def test_server_errors_mark_the_span_as_error(make_app: Callable[..., Harness]) -> None:
    h = make_app(load=False)
    h.post({"inputs": [[1, 2, 3, 4]]})
    [span] = h.spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["http.response.status_code"] == 503
    assert span.attributes["shipway.model.version"] == -1


def test_loose_api_key_permissions_are_warned_about(registry: Registry, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k\n")
    key.chmod(0o644)
    out = io.BytesIO()
    app = ServingApp(ServingConfig(pin_file=str(registry.pin_file(tmp_path / "pin.json", IRIS, 1)),
                                   api_key_file=str(key)), log_stream=out, process_metrics=False)
    app.log_sink.flush()
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (line["level"], line["event"], line["path"]) == ("warning", "api_key_file_permissions", str(key))
    assert "k" not in line["message"].split()


def test_reload_picks_up_a_rotated_api_key(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    key_file = h.tmp / "api-key"
    key_file.write_text("rotated-key-42\n")
    assert h.app.reload() is True
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 401
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers={"X-API-Key": "rotated-key-42"}).status_code == 200
    assert len(h.events("api_key_rotated")) == 1
    key_file.write_text("")
    assert h.app.reload() is True
    assert h.events("api_key_invalid")[0]["message"] == "keeping the current key"
    assert h.post({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers={"X-API-Key": "rotated-key-42"}).status_code == 200
    h.app.log_sink.flush()
    assert b"rotated-key-42" not in h.out.getvalue()


# ----------------------------------------------------------------- off switches


def test_no_metrics_and_no_access_log_turn_off_only_those(make_app: Callable[..., Harness],
                                                          registry: Registry) -> None:
    h = make_app(metrics=False, access_log=False)
    x = iris_rows(registry, [0, 50])
    response = h.post({"inputs": x.to_numpy().tolist()}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"predictions": registry.iris_model.predict(x).tolist()}
    scrape = h.client.get("/metrics")
    assert scrape.status_code == 404
    assert scrape.json() == {"error_code": "NOT_FOUND", "message": "metrics are turned off (--no-metrics)"}
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="2xx") is None
    assert h.sample("shipway_model_info", model=IRIS, version="1", environment="test") is None
    assert h.requests() == []
    assert [line["version"] for line in h.events("model_loaded")] == [1]  # lifecycle events stay
    [span, _] = h.spans.get_finished_spans()  # tracing is still on
    assert span.attributes["http.response.status_code"] == 200
