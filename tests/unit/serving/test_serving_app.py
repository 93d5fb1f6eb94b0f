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
        sent = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
        return self.client.post("/invocations", content=body, headers=sent)

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


DIABETES_COLUMNS = ["age", "bmi", "bp"]


def rows(data: list[list[Any]]) -> dict[str, Any]:
    """A dataframe_split payload for iris (4 values a row) or diabetes (3) rows."""
    columns = IRIS_COLUMNS if len(data[0]) == 4 else DIABETES_COLUMNS
    return {"dataframe_split": {"columns": columns, "data": data}}


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
    response = h.post(rows(x.to_numpy().tolist()))
    assert response.json() == {"predictions": registry.iris_model.predict(x).tolist()}


def broken_loader(error: Exception) -> Callable[..., LoadedModel]:
    schema = InputSchema(columns=tuple(ColumnSpec(c, "double") for c in IRIS_COLUMNS))

    def broken(batch: Any) -> Any:
        raise error

    def loader(pin: Any, log: Any = None) -> LoadedModel:
        return LoadedModel(name=pin.model_name, version=pin.model_version, schema=schema, flavor="pyfunc",
                           is_classifier=True, predict_fn=broken, warm_batch=synthetic_batch(schema))

    return loader


def test_model_errors_are_400_as_mlflow_with_a_reference_not_the_error_text(
        make_app: Callable[..., Harness]) -> None:
    h = make_app(loader=broken_loader(RuntimeError("weights missing at /secret/path")))
    response = h.post(rows([[1, 2, 3, 4]]), headers={**AUTH, "X-Request-Id": "req-7"})
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert "secret" not in body["message"] and "weights" not in body["message"]
    trace = response.headers["x-trace-id"]
    assert f"reference req-7, trace {trace}" in body["message"]
    assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="model_error") == 1
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") == 1
    [event] = h.events("model_error")
    assert (event["error"], event["request_id"], event["trace_id"]) == (
        "RuntimeError: weights missing at /secret/path", "req-7", trace)


def test_nulls_the_model_cannot_score_are_400_naming_the_columns(make_app: Callable[..., Harness]) -> None:
    h = make_app()  # the real sklearn model: NaN in its input raises inside predict
    response = h.post(rows([[None, 3.5, 1.4, None], [5.1, 3.5, 1.4, 0.2]]))
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert response.json()["message"].startswith(
        "columns ['sepal_length', 'petal_width'] have null values the model cannot score")
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="5xx") is None


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
    response = h.post(rows([[5.1, 3.5, 1.4, 0.2]]), headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"error_code": "UNAUTHORIZED", "message": AUTH_MESSAGE}
        assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="unauthorized") == 1
    assert h.client.get("/health").status_code == 200  # probes and scrapes need no key
    assert h.client.get("/metrics").status_code == 200


def test_key_never_appears_in_logs(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    h.post(rows([[5.1, 3.5, 1.4, 0.2]]))
    h.post(rows([[5.1, 3.5, 1.4, 0.2]]), headers={"X-API-Key": "nope"})
    h.app.log_sink.flush()
    assert KEY.encode() not in h.out.getvalue()


COLS = "[sepal_length, sepal_width, petal_length, petal_width]"


SPLIT = '{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], '


@pytest.mark.parametrize(("body", "code", "message"), [
    (b'{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length"], "data": [[1, 2, 3]]}}',
     "INVALID_PARAMETER_VALUE", f"missing column 'petal_width'; the model expects the columns {COLS}"),
    ((SPLIT + '"data": [[1, 2, "x", 4]]}}').encode(), "BAD_REQUEST",
     "column 'petal_length' row 0: expected double (a JSON number, a numeric string or null), got string \"x\""),
    (b'{"data": [[1, 2, 3, 4]]}', "BAD_REQUEST",
     "request body has no input key (got ['data']); expected exactly one of: dataframe_split, dataframe_records, "
     "inputs, instances"),
    (b'{"inputs": [[1, 2, 3, 4]', "BAD_REQUEST",
     "request body is not valid JSON: unexpected end of data: line 1 column 25 (char 24)"),
    ((SPLIT + '"data": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]}}').encode(), "BAD_REQUEST",
     "payload has 4 rows, more than the limit of 3; split it into smaller requests"),
    (b'{"inputs": [[1, 2, 3, 4]]}', "INVALID_PARAMETER_VALUE",
     f"inputs is a list of rows without column names, but the model expects named columns {COLS}; send "
     f"inputs as an object mapping column name to values, a list of objects, or use dataframe_split"),
])
def test_malformed_requests_are_400_naming_the_problem(make_app: Callable[..., Harness], body: bytes,
                                                       code: str, message: str) -> None:
    h = make_app(max_rows=3)
    response = h.post(None, raw=body)
    assert response.status_code == 400
    assert response.json() == {"error_code": code, "message": message}
    assert h.sample("shipway_errors_total", model=IRIS, version="1", kind="bad_request") == 1
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") == 1


def test_oversized_body_is_413(make_app: Callable[..., Harness]) -> None:
    h = make_app(max_body_bytes=64)
    response = h.post(rows([[1.0, 2.0, 3.0, 4.0]] * 5))
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
    assert h.post(rows([[1, 2, 3, 4]])).status_code == 503
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
        h.post(rows([x.iloc[i].tolist()]))
    h.post(rows(x.iloc[2:4].to_numpy().tolist()))
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
    response = h.post(rows([[5.1, 3.5, 1.4, 0.2]]), headers={
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
    second = h.post(rows([[6.5, 3.0, 5.5, 2.0], [5.1, 3.5, 1.4, 0.3]]), headers={**AUTH, "X-Request-Id": "r2"})
    h.post(rows([[1, 2, "x", 4]]), headers={**AUTH, "X-Request-Id": "r3"})  # 400: not logged
    assert h.app.request_sink is not None
    h.app.request_sink.flush()
    path = h.tmp / "requests.jsonl"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2"]
    assert set(lines[1]) == {"ts", "request_id", "trace_id", "model", "version", "inputs", "predictions"}
    # joinable with late labels (request_id) and with the request's trace and log lines (trace_id)
    assert lines[1]["trace_id"] == second.headers["x-trace-id"] and len(lines[1]["trace_id"]) == 32
    assert lines[0]["trace_id"] != lines[1]["trace_id"]
    assert lines[1]["inputs"] == {"sepal_length": [6.5, 5.1], "sepal_width": [3.0, 3.5],
                                  "petal_length": [5.5, 1.4], "petal_width": [2.0, 0.3]}
    assert (lines[1]["model"], lines[1]["version"], len(lines[1]["predictions"])) == (IRIS, 1, 2)


def test_request_log_is_flushed_by_the_background_thread(make_app: Callable[..., Harness]) -> None:
    h = make_app(request_log=True)
    assert h.app.request_sink is not None
    h.app.request_sink.start()
    h.post(rows([[6.5, 3.0, 5.5, 2.0]]))
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
    h.post(rows(x.to_numpy().tolist()))
    assert h.sample("shipway_drift_samples", **v1) == 150
    for col in IRIS_COLUMNS:
        assert h.sample("shipway_feature_psi", **v1, feature=col) == pytest.approx(0.0, abs=1e-9)
    assert h.client.post("/drift/reset").status_code == 401
    assert h.client.post("/drift/reset", headers=AUTH).json() == {"status": "reset"}
    assert h.sample("shipway_drift_samples", **v1) == 0
    shifted = x.copy()
    shifted["petal_length"] = shifted["petal_length"] + 3 * float(np.std(x["petal_length"]))
    h.post(rows(shifted.to_numpy().tolist()))
    assert h.sample("shipway_feature_psi", **v1, feature="petal_length") > 1.0
    assert h.sample("shipway_feature_psi", **v1, feature="sepal_width") == pytest.approx(0.0, abs=1e-9)


def test_live_effect_sizes_are_published_and_move_only_with_user_traffic(
        make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    x = registry.iris_x
    v1 = {"model": IRIS, "version": "1"}

    def effect(feature: str, statistic: str = "wasserstein") -> float | None:
        return h.sample("shipway_feature_drift_effect", **v1, feature=feature, statistic=statistic)

    h.post(rows(x.to_numpy().tolist()))  # the training rows: below the 0.1-sd default threshold
    for col in IRIS_COLUMNS:  # (iris is coarse: its ties cost up to a sketch step in the live quantiles)
        assert 0.0 <= effect(col) < 0.1  # type: ignore[operator]
        assert effect(col, "null_rate") == pytest.approx(0.0, abs=1e-12)
    assert h.client.post("/drift/reset", headers=AUTH).json() == {"status": "reset"}
    shifted = x.copy()
    shifted["petal_length"] = shifted["petal_length"] + float(np.std(x["petal_length"]))
    for klass in ("verification", "smoke", "shadow"):  # probes carry the shift but must not count
        assert h.post(rows(shifted.to_numpy().tolist()),
                      headers={**AUTH, "X-Shipway-Traffic": klass}).status_code == 200
    assert h.sample("shipway_drift_samples", **v1) == 0
    assert effect("petal_length") == 0.0
    h.post(rows(shifted.to_numpy().tolist()))  # user traffic with a one-sd shift
    # in reference standard deviations; values past the training range count at its edge, so a shift
    # that leaves the range reads low (0.88 here for 1.0), still far above the 0.1 threshold
    assert 0.8 < effect("petal_length") <= 1.0  # type: ignore[operator]
    assert effect("sepal_width") < 0.1  # type: ignore[operator]
    assert effect("petal_length", "null_rate") == pytest.approx(0.0, abs=1e-12)


def test_psi_is_refreshed_every_n_requests_not_per_request(make_app: Callable[..., Harness]) -> None:
    h = make_app(drift_refresh_requests=3, drift_refresh_seconds=3600)
    v1 = {"model": IRIS, "version": "1", "feature": "petal_length"}
    for _ in range(2):
        h.post(rows([[5.0, 3.0, 50.0, 1.0]]))
    assert h.sample("shipway_feature_psi", **v1) == 0.0
    h.post(rows([[5.0, 3.0, 50.0, 1.0]]))
    assert h.sample("shipway_feature_psi", **v1) > 1.0


def test_a_model_without_baseline_profile_serves_without_drift(make_app: Callable[..., Harness]) -> None:
    h = make_app(DIABETES, 1)
    assert h.post(rows([[0.01, 0.02, 0.03]])).status_code == 200
    assert h.sample("shipway_drift_samples", model=DIABETES, version="1") is None
    assert h.events("model_loaded")[0]["drift_features"] == []


# ----------------------------------------------------------------- hot swap


def test_reload_swaps_versions_and_moves_the_info_gauge(make_app: Callable[..., Harness], registry: Registry,
                                                        iris_v2: int) -> None:
    h = make_app()
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]])).status_code == 200
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
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]])).status_code == 200
    assert h.requests()[-1]["version"] == iris_v2


def test_failed_reload_keeps_serving_the_old_version(make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    h.write_pin(IRIS, 99, registry)
    assert h.app.reload() is False
    assert h.client.get("/version").json()["model_version"] == 1
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]])).status_code == 200
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
    "shipway_feature_drift_effect": ("gauge", {"model", "version", "feature", "statistic"}),
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
    classifier.post(rows([[5.1, 3.5, 1.4, 0.2]]))
    classifier.post({"nope": 1})
    regressor = make_app(DIABETES, 1)
    regressor.post(rows([[0.01, 0.02, 0.03]]))
    seen = families(classifier)
    seen["shipway_prediction_value"] = families(regressor)["shipway_prediction_value"]
    assert seen == CONTRACT


def test_server_errors_mark_the_span_as_error(make_app: Callable[..., Harness]) -> None:
    h = make_app(load=False)
    h.post(rows([[1, 2, 3, 4]]))
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
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]])).status_code == 401
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]]), headers={"X-API-Key": "rotated-key-42"}).status_code == 200
    assert len(h.events("api_key_rotated")) == 1
    key_file.write_text("")
    assert h.app.reload() is True
    assert h.events("api_key_invalid")[0]["message"] == "keeping the current key"
    assert h.post(rows([[5.1, 3.5, 1.4, 0.2]]), headers={"X-API-Key": "rotated-key-42"}).status_code == 200
    h.app.log_sink.flush()
    assert b"rotated-key-42" not in h.out.getvalue()


# ----------------------------------------------------------------- off switches


def test_no_metrics_and_no_access_log_turn_off_only_those(make_app: Callable[..., Harness],
                                                          registry: Registry) -> None:
    h = make_app(metrics=False, access_log=False)
    x = iris_rows(registry, [0, 50])
    response = h.post(rows(x.to_numpy().tolist()), headers=AUTH)
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
    [span] = h.spans.get_finished_spans()  # tracing is still on (/metrics is never traced)
    assert span.attributes["http.response.status_code"] == 200


# ----------------------------------------------------------------- MLflow protocol: content types, params


IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8"])
def test_json_with_its_parameters_is_accepted(make_app: Callable[..., Harness], content_type: str) -> None:
    h = make_app()
    response = h.post(rows([IRIS_ROW]), headers={**AUTH, "Content-Type": content_type})
    assert (response.status_code, response.json()) == (200, {"predictions": [0]})


@pytest.mark.parametrize(("content_type", "message"), [
    (None, "no Content-Type header; send 'Content-Type: application/json' or 'text/csv'"),
    ("text/plain", "Content-Type 'text/plain' is not supported; send 'application/json' or 'text/csv'"),
    ("application/x-foo", "Content-Type 'application/x-foo' is not supported; send 'application/json' or 'text/csv'"),
    ("application/json; charset=latin-1",
     "charset 'latin-1' is not supported; send the body as UTF-8 (charset=utf-8)"),
    ("application/json; format=pandas-split",
     "Content-Type parameters ['format'] are not supported; only charset=utf-8 is"),
    # MLflow compares the type and the charset value literally; so do we (same 415s).
    ("Application/JSON", "Content-Type 'Application/JSON' is not supported; send 'application/json' or 'text/csv'"),
    ('application/json; charset="utf-8"',
     "charset '\"utf-8\"' is not supported; send the body as UTF-8 (charset=utf-8)"),
])
def test_other_content_types_are_415_plain_text_as_mlflow(make_app: Callable[..., Harness],
                                                          content_type: str | None, message: str) -> None:
    h = make_app()
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    response = h.client.post("/invocations", content=json.dumps(rows([IRIS_ROW])).encode(), headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == message
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") == 1


def test_csv_bodies_score_like_json(make_app: Callable[..., Harness], registry: Registry) -> None:
    h = make_app()
    x = iris_rows(registry, [0, 50, 100])
    csv_body = x.to_csv(index=False).encode()
    response = h.client.post("/invocations", content=csv_body,
                             headers={**AUTH, "Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 200
    assert response.json() == {"predictions": registry.iris_model.predict(x).tolist()}
    bad = h.client.post("/invocations", content=b"sepal_length\nabc\n", headers={**AUTH, "Content-Type": "text/csv"})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "BAD_REQUEST")
    assert bad.json()["message"] == "CSV column 'sepal_length' row 0: 'abc' is not a valid double"


def test_params_and_extra_keys_are_ignored_for_a_model_without_params(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    doc = {**rows([IRIS_ROW]), "params": {"threshold": 0.3}, "client_meta": {"team": "x"}}
    assert (h.post(doc).status_code, h.post(doc).json()) == (200, {"predictions": [0]})


def test_strings_and_booleans_in_a_double_column_are_converted(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    converted = h.post(rows([["5.1", "3.5", True, 0.2]])).json()
    assert converted == h.post(rows([[5.1, 3.5, 1.0, 0.2]])).json()


# ----------------------------------------------------------------- traffic classes


def quality_log(h: Harness) -> list[dict[str, Any]]:
    """The request log the quality join reads (inputs + predictions per request)."""
    assert h.app.request_sink is not None
    h.app.request_sink.flush()
    path = h.tmp / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_platform_traffic_is_kept_out_of_drift_request_log_and_the_slo_route(
        make_app: Callable[..., Harness]) -> None:
    h = make_app(request_log=True)
    far = rows([[5.0, 3.0, 50.0, 1.0]])  # would move PSI if it counted
    for klass in ("verification", "smoke", "shadow"):
        assert h.post(far, headers={**AUTH, "X-Shipway-Traffic": klass}).status_code == 200
    assert quality_log(h) == []
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="2xx") is None
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations:verification",
                    status_class="2xx") == 1
    assert h.sample("shipway_drift_samples", model=IRIS, version="1") == 0
    h.post(far)  # user traffic still counts
    assert len(quality_log(h)) == 1
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="2xx") == 1


def test_traffic_class_needs_the_api_key(make_app: Callable[..., Harness]) -> None:
    h = make_app(request_log=True)
    response = h.post(rows([IRIS_ROW]), headers={"X-API-Key": "wrong", "X-Shipway-Traffic": "verification"})
    assert response.status_code == 401
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") == 1
    unknown = h.post(rows([IRIS_ROW]), headers={**AUTH, "X-Shipway-Traffic": "vip"})
    assert unknown.status_code == 200
    assert len(quality_log(h)) == 1  # an unknown class is ordinary traffic


# ----------------------------------------------------------------- routes: version, model info, OpenAPI


def test_model_info_route_and_mlflow_version_switch(make_app: Callable[..., Harness]) -> None:
    from importlib.metadata import version

    plain = make_app()
    assert plain.client.get("/model-info").json()["model_version"] == 1
    assert plain.client.get("/version").json()["model_name"] == IRIS
    mlflow_like = make_app(mlflow_version_route=True)
    response = mlflow_like.client.get("/version")
    assert (response.status_code, response.text) == (200, version("mlflow"))
    assert mlflow_like.client.get("/model-info").json()["model_name"] == IRIS


def test_openapi_document_lists_every_route_the_app_answers(make_app: Callable[..., Harness]) -> None:
    from shipway.serving.app import EXTRA_ROUTES, ROUTES

    h = make_app()
    doc = h.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    served = {r for r in ROUTES | EXTRA_ROUTES if h.client.get(r).status_code != 404 or r == "/metrics"}
    assert served <= set(doc["paths"]) | {"/explain"}
    post = doc["paths"]["/invocations"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "text/csv"}


def test_probe_routes_are_not_traced(make_app: Callable[..., Harness]) -> None:
    h = make_app()
    for route in ("/metrics", "/health", "/ready", "/ping"):
        assert h.client.get(route).status_code == 200
    assert h.spans.get_finished_spans() == ()
    h.post(rows([IRIS_ROW]))
    assert [s.name for s in h.spans.get_finished_spans()] == ["POST /invocations"]


# ----------------------------------------------------------------- body timeout


def test_a_body_that_never_finishes_is_408_with_connection_close(make_app: Callable[..., Harness]) -> None:
    h = make_app(body_timeout_seconds=0.2)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"inputs"', "more_body": True}
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/invocations", "method": "POST",
                 "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]}
        await asyncio.wait_for(h.app(scope, receive, send), 5)

    asyncio.run(run())
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert h.events("request_abandoned")[0]["status"] == 408
    # Not a latency observation and not a request the SLO counts.
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations",
                    status_class="4xx") is None


def test_a_slow_body_within_the_timeout_is_served_and_a_late_one_is_408(
        make_app: Callable[..., Harness]) -> None:
    # The deadline runs from the start of the body read: pieces arriving over 0.3 s fit a 0.6 s
    # timeout; the same pieces over 1.2 s do not. Several reads on one loop keep their own deadlines.
    h = make_app(body_timeout_seconds=0.6)
    body = json.dumps(rows([IRIS_ROW])).encode()
    statuses: dict[str, int] = {}

    async def one(name: str, pause: float) -> None:
        pieces = [body[:10], body[10:20], body[20:]]

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(pause)
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[name] = message["status"]

        scope = {"type": "http", "path": "/invocations", "method": "POST",
                 "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]}
        await h.app(scope, receive, send)

    async def run() -> None:
        await asyncio.wait_for(asyncio.gather(one("fast", 0.1), one("slow", 0.4)), 10)

    asyncio.run(run())
    assert statuses == {"fast": 200, "slow": 408}


def test_body_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="body_timeout_seconds 0 must be a positive number of seconds"):
        ServingConfig(pin_file=str(tmp_path / "pin.json"), body_timeout_seconds=0)


def test_deployment_verification_headers_mark_its_traffic_as_verification(make_app: Callable[..., Harness]) -> None:
    from shipway.verify import EndpointContract

    h = make_app(request_log=True)
    headers = {**EndpointContract().headers(KEY), "Content-Type": "application/json"}
    assert h.post(rows([IRIS_ROW]), headers=headers).status_code == 200
    assert quality_log(h) == []
    assert h.sample("shipway_requests_total", model=IRIS, version="1", route="/invocations:verification",
                    status_class="2xx") == 1
