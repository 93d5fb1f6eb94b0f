"""Pin file, API key file, settings, command line, tracing helpers and log sink."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shipway.serving.cli import config_from_args, main
from shipway.serving.config import Pin, PinError, ServingConfig, read_api_key, read_pin
from shipway.serving.logsink import LineSink, utc_now_iso
from shipway.serving.telemetry import RequestTracer, parse_traceparent, traces_url


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
    assert (uv.host, uv.port, uv.workers, uv.loop, uv.http) == ("127.0.0.1", 8101, 1, "uvloop", "httptools")
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


def test_otlp_endpoint_adds_a_batch_processor_with_the_http_exporter() -> None:
    tracer = RequestTracer("test", "http://127.0.0.1:4318")
    [processor] = tracer.processors
    assert isinstance(processor, BatchSpanProcessor)
    exporter = processor._batch_processor._exporter
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    tracer.shutdown()
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"


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
