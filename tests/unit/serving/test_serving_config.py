"""Pin file, API key file, settings, command line, tracing helpers and log sink."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shipway.serving.cli import config_from_args, main
from shipway.serving.config import Pin, PinError, ServingConfig, read_api_key, read_pin
from shipway.serving.logsink import LineSink, utc_now_iso
from shipway.serving.telemetry import OtlpSpanExporter, RequestTracer, parse_traceparent, traces_url
from tests.support.threads import serve_in_thread


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pin.json"
    path.write_text(text)
    return path


def test_read_pin(tmp_path: Path) -> None:
    pin = read_pin(write(tmp_path, json.dumps(
        {"model_name": "iris-classifier", "model_version": 3, "tracking_uri": "http://127.0.0.1:5000"})))
    assert pin == Pin("iris-classifier", 3, "http://127.0.0.1:5000")
    assert pin.model_uri == "models:/iris-classifier/3"


@pytest.mark.parametrize(("text", "message"), [
    ("[]", "pin file {p} must hold a JSON object"),
    ("{", "pin file {p} is not valid JSON: unexpected end of data: line 1 column 2 (char 1)"),
    ('{"model_version": 1, "tracking_uri": "x"}', "pin file {p}: model_name None must be a non-empty string"),
    ('{"model_name": "m", "model_version": "latest", "tracking_uri": "x"}',
     "pin file {p}: model_version 'latest' must be a positive integer (an exact registry version, not an alias)"),
    ('{"model_name": "m", "model_version": 0, "tracking_uri": "x"}',
     "pin file {p}: model_version 0 must be a positive integer (an exact registry version, not an alias)"),
    ('{"model_name": "m", "model_version": true, "tracking_uri": "x"}',
     "pin file {p}: model_version True must be a positive integer (an exact registry version, not an alias)"),
    ('{"model_name": "m", "model_version": 1}', "pin file {p}: tracking_uri None must be a non-empty string"),
])
def test_bad_pin_files_are_rejected_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PinError) as err:
        read_pin(path)
    assert str(err.value) == message.format(p=path)


def test_missing_pin_file(tmp_path: Path) -> None:
    with pytest.raises(PinError, match=r"pin file .*/nope\.json does not exist"):
        read_pin(tmp_path / "nope.json")


def test_api_key_file_is_stripped_and_permissions_reported(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("  abc123\n")
    key.chmod(0o600)
    assert read_api_key(key) == (b"abc123", False)
    key.chmod(0o644)
    assert read_api_key(key) == (b"abc123", True)
    key.write_text("\n")
    with pytest.raises(ValueError, match=r"API key file .* is empty"):
        read_api_key(key)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_rows", 0, "max_rows 0 must be a positive integer"),
    ("threadpool_rows", -1, "threadpool_rows -1 must be a positive integer"),
    ("port", 70000, "port 70000 must be in 1..65535"),
])
def test_settings_are_validated(field: str, value: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        ServingConfig(pin_file="pin.json", **{field: value})  # type: ignore[arg-type]
    assert str(err.value) == message


def test_command_line_maps_to_settings() -> None:
    config = config_from_args([
        "--pin-file", "PIN.json", "--host", "127.0.0.1", "--port", "8101", "--api-key-file", "KEY",
        "--otlp-endpoint", "http://127.0.0.1:4318", "--request-log", "r.jsonl", "--environment", "prod",
        "--max-rows", "50"])
    assert config == ServingConfig(pin_file="PIN.json", host="127.0.0.1", port=8101, api_key_file="KEY",
                                   otlp_endpoint="http://127.0.0.1:4318", request_log="r.jsonl",
                                   environment="prod", max_rows=50)
    assert (config.metrics, config.access_log) == (True, True)
    off = config_from_args(["--pin-file", "PIN.json", "--no-metrics", "--no-access-log"])
    assert (off.metrics, off.access_log, off.otlp_endpoint, off.request_log) == (False, False, None, None)


def test_bad_pin_exits_2_with_a_json_error_line(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = write(tmp_path, "[]")
    assert main(["--pin-file", str(path), "--port", "8101"]) == 2
    line = json.loads(capsysbinary.readouterr().out)
    assert (line["level"], line["event"], line["error"]) == (
        "error", "startup_failed", f"pin file {path} must hold a JSON object")


def test_uvicorn_is_configured_for_a_single_fast_worker(tmp_path: Path) -> None:
    from shipway.serving.app import ServingApp
    from shipway.serving.server import uvicorn_config

    pin = write(tmp_path, json.dumps({"model_name": "m", "model_version": 1, "tracking_uri": "sqlite:///x.db"}))
    config = ServingConfig(pin_file=str(pin), port=8101, drain_seconds=10)
    uv = uvicorn_config(ServingApp(config, log_stream=io.BytesIO(), process_metrics=False), config)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert (uv.host, uv.port, uv.workers, uv.loop) == ("127.0.0.1", 8101, 1, "uvloop")
    assert isinstance(uv.http, type) and issubclass(uv.http, HttpToolsProtocol)  # + a header deadline
    assert (uv.access_log, uv.lifespan, uv.timeout_graceful_shutdown) == (False, "on", 10)


# ----------------------------------------------------------------- tracing


@pytest.mark.parametrize(("header", "expected"), [
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
     (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, True)),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00",
     (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, False)),
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
    ("00-4bf92f3577b34da6-00f067aa0ba902b7-01", None),
    ("garbage", None),
    (None, None),
])
def test_traceparent_parsing(header: str | None, expected: tuple[int, int, bool] | None) -> None:
    assert parse_traceparent(header) == expected


def test_spans_are_exported_only_with_processors_and_when_sampled() -> None:
    exporter = InMemorySpanExporter()
    tracer = RequestTracer("test", None, [SimpleSpanProcessor(exporter)])
    unsampled = tracer.begin("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    tracer.finish(unsampled, "GET /health", 1, 2, {"url.path": "/health"}, error=False)
    assert exporter.get_finished_spans() == ()
    ids = tracer.begin(None)
    tracer.finish(ids, "POST /invocations", 100, 250, {"http.response.status_code": 500}, error=True)
    [span] = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id, span.parent) == (ids.trace_id, ids.span_id, None)
    assert (span.start_time, span.end_time, span.status.status_code) == (100, 250, StatusCode.ERROR)
    assert span.resource.attributes["service.name"] == "shipway-serving"
    assert span.resource.attributes["deployment.environment.name"] == "test"
    assert RequestTracer("test", None).processors == []


def test_otlp_endpoint_adds_the_fast_exporter_with_the_traces_url() -> None:
    tracer = RequestTracer("test", "http://127.0.0.1:4318")
    assert tracer.processors == []
    assert isinstance(tracer.exporter, OtlpSpanExporter)
    assert tracer.exporter.url == "http://127.0.0.1:4318/v1/traces"
    assert tracer.enabled
    tracer.shutdown()
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"
    assert RequestTracer("test", None).exporter is None


def test_exported_spans_decode_as_otlp_protobuf() -> None:
    """The hand-written wire encoding must parse with the official OTLP protobuf classes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    tracer = RequestTracer("prod", "http://127.0.0.1:9")  # nothing listens: export fails quietly
    assert tracer.exporter is not None
    remote = tracer.begin("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    local = tracer.begin(None)
    attrs = {"http.request.method": "POST", "http.response.status_code": 500, "shipway.model.version": -1,
             "shipway.request.rows": 3}
    records = [(remote.trace_id, remote.span_id, remote.parent_span_id, "POST /invocations", 100, 250, attrs, True),
               (local.trace_id, local.span_id, None, "GET /health", 7, 9, {"url.path": "/health"}, False)]
    request = ExportTraceServiceRequest.FromString(tracer.exporter.encode(records))
    [resource_spans] = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert (resource["service.name"], resource["deployment.environment.name"]) == ("shipway-serving", "prod")
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "shipway.serving"
    first, second = scope_spans.spans
    assert first.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first.parent_span_id.hex() == "00f067aa0ba902b7"
    assert first.span_id.hex() == remote.span_hex
    assert (first.name, first.kind, first.start_time_unix_nano, first.end_time_unix_nano) == (
        "POST /invocations", 2, 100, 250)
    assert {kv.key: kv.value for kv in first.attributes}["http.request.method"].string_value == "POST"
    ints = {kv.key: kv.value.int_value for kv in first.attributes if kv.key != "http.request.method"}
    assert ints == {"http.response.status_code": 500, "shipway.model.version": -1, "shipway.request.rows": 3}
    assert (first.status.code, first.flags) == (2, 0x300)
    assert (second.parent_span_id, second.trace_id.hex(), second.status.code, second.flags) == (
        b"", local.trace_hex, 0, 0x100)
    tracer.shutdown()


def test_exporter_posts_batches_to_the_collector() -> None:
    """Spans reach a collector on 127.0.0.1 as protobuf POSTs to /v1/traces."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, str, bytes]] = []

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = HTTPServer(("127.0.0.1", 0), Sink)
    serve_in_thread(server)
    try:
        tracer = RequestTracer("test", f"http://127.0.0.1:{server.server_port}")
        for _ in range(3):
            tracer.finish(tracer.begin(None), "GET /health", 1, 2, {"url.path": "/health"}, error=False)
        tracer.finish(tracer.begin("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), "GET /ping",
                      1, 2, {}, error=False)  # not sampled by the caller: not exported
        tracer.shutdown()
    finally:
        server.shutdown()
    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    spans = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["GET /health"] * 3
    assert tracer.exporter is not None and tracer.exporter.exported == 3


# ----------------------------------------------------------------- log sink


def test_sink_buffers_until_flush_or_size_limit() -> None:
    out = io.BytesIO()
    sink = LineSink(out, max_bytes=40)
    sink.write({"a": 1})
    assert out.getvalue() == b""
    sink.flush()
    assert out.getvalue() == b'{"a":1}\n'
    sink.write({"b": "x" * 40})
    assert out.getvalue().endswith(b'"}\n')  # over max_bytes: written without waiting


def test_request_log_file_is_created_0600(tmp_path: Path) -> None:
    sink = LineSink.append_file(str(tmp_path / "r.jsonl"))
    sink.write({"x": 1})
    sink.close()
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "r.jsonl").read_text() == '{"x":1}\n'


def test_timestamps_are_utc_iso8601_with_milliseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", utc_now_iso())


# ----------------------------------------------------------------- metrics tallies


def test_tallied_observations_expose_exactly_what_direct_observes_would() -> None:
    """Durations/counters tallied on the request path and folded at collection time must give the
    same samples as calling prometheus_client's observe()/inc() per request."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from shipway.serving.metrics import DURATION_BUCKETS, ServingMetrics

    metrics = ServingMetrics(process_metrics=False)
    series = metrics.series("m", "3")
    ref_registry = CollectorRegistry()
    ref_hist = Histogram("h", "", buckets=DURATION_BUCKETS, registry=ref_registry)
    ref_err = Counter("e", "", registry=ref_registry)
    durations = [0.0, 0.0005, 0.00051, 0.001, 0.003, 0.024999, 0.025, 4.9, 5.0, 5.0001, 60.0, 1e-9]
    for i, seconds in enumerate(durations):
        series.observe_request("/invocations", 200 if i % 3 else 400, seconds, None if i % 3 else "bad_request")
        ref_hist.observe(seconds)
        if i % 3 == 0:
            ref_err.inc()
    series.observe_class("setosa", 2)
    series.inflight.inc()
    series.inflight.inc()
    series.inflight.dec()
    labels = {"model": "m", "version": "3", "route": "/invocations"}
    get = metrics.registry.get_sample_value
    for bound in [*DURATION_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else str(bound)
        assert get("shipway_request_duration_seconds_bucket", {**labels, "le": le}) == ref_registry.get_sample_value(
            "h_bucket", {"le": le}), le
    assert get("shipway_request_duration_seconds_sum", labels) == pytest.approx(sum(durations))
    assert get("shipway_request_duration_seconds_count", labels) == len(durations)
    assert get("shipway_requests_total", {**labels, "status_class": "2xx"}) == 8
    assert get("shipway_requests_total", {**labels, "status_class": "4xx"}) == 4
    assert get("shipway_errors_total", {"model": "m", "version": "3", "kind": "bad_request"}) == 4
    assert get("shipway_predictions_total", {"model": "m", "version": "3", "class": "setosa"}) == 2
    assert get("shipway_inflight_requests", {"model": "m"}) == 1
    series.observe_request("/invocations", 200, 0.002, None)  # a second collection adds only what is new
    assert get("shipway_requests_total", {**labels, "status_class": "2xx"}) == 9
    assert b'shipway_request_duration_seconds_count{model="m",route="/invocations",version="3"} 13.0' in (
        metrics.render())


def test_exporter_flush_sends_what_was_queued_in_bounded_batches() -> None:
    """Spans that arrive while a flush is POSTing wait for the next tick (no chase of tiny POSTs)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    exporter = OtlpSpanExporter("http://127.0.0.1:9/v1/traces", Resource.create({}), InstrumentationScope("s"),
                                interval=3600, max_batch=2)
    sent: list[int] = []

    def send(body: bytes) -> None:
        sent.append(len(ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans))
        exporter.add((1, 99, None, "late", 1, 2, {}, False))  # arrives during the POST

    exporter._send = send  # type: ignore[method-assign]
    for i in range(5):
        exporter.add((1, i + 1, None, "GET /health", 1, 2, {}, False))
    exporter.flush()
    assert (sent, exporter.exported, len(exporter._queue)) == ([2, 2, 1], 5, 3)
    exporter._stop.set()
